"""Run the tap as ``python -m tap_piriod``."""

from tap_piriod.tap import TapPiriod

TapPiriod.cli()
