"""Run the target with ``python -m target_piriod``."""

from target_piriod.target import TargetPiriod

TargetPiriod.cli()
