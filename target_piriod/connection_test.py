"""Checking auth_token and api_url with one read: ``--test`` and Meltano's test stream.

Both write nothing (a test writes no customer to a billing system) and say in one line
what Piriod accepted; a wrong token or api_url stops the run with the LoadError naming
the setting. The SDK has ``--test`` for taps only: ``add_test_option`` adds it to the
target's command line.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import click

from target_piriod.loader import Loader


def check_connection(loader: Loader, what: str, outcome: str) -> None:
    """Read the API once, and say on stderr what it accepted and what was not done."""
    count = loader.check_access()
    readable = "customers readable" if count is None else f"{count} customer(s) readable"
    sys.stderr.write(f"target-piriod: {what}: Piriod at {loader.client.base_url} "
                     f"accepted auth_token ({readable}); {outcome}\n")
    sys.stderr.flush()


def add_test_option(command: click.Command,
                    callback: Callable[[click.Context, click.Parameter, Any], Any]) -> None:
    """Add ``--test`` to the target's command; ``callback`` runs the test and exits."""
    command.params.append(click.Option(
        ["--test"], is_flag=True, expose_value=False, callback=callback,
        help="Check auth_token and api_url with one read of the API and exit (1 with "
             "the setting to fix if they do not work); reads no input, writes nothing."))
