"""The target's command line: how an expected failure ends it, and how it reads input.

A failure someone can fix (a setting, the API, a stream map) ends the run with its
message alone and exit code 1; bugs still show their traceback.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import click
from singer_sdk.exceptions import ConfigValidationError, MappingError

from piriod.errors import PiriodError


@contextlib.contextmanager
def ended() -> Iterator[None]:
    """End an expected failure (a setting, the API) with its message alone, exit 1.

    The message names the setting or request and what to do; a traceback would add
    nothing for the person running the target. Load failures are already LoadErrors
    (click prints their message); bugs still show their traceback.
    """
    try:
        yield
    except ConfigValidationError as error:
        raise click.ClickException("; ".join(error.errors) or str(error)) from None
    except PiriodError as error:
        raise click.ClickException(str(error)) from None
    except MappingError as error:  # a stream map the SDK cannot apply
        raise click.ClickException(f"stream_maps: {error} (see "
                                   "https://sdk.meltano.com/en/latest/stream_maps.html)") from None


def read_input_as_utf8(command: click.Command) -> None:
    """Read ``--input`` as standard input is read (``InputReader.default_input``).

    UTF-8, with bytes that are not UTF-8 kept as surrogate escapes for their record's
    dead letter.
    """
    for param in command.params:
        if param.name == "file_input":
            param.type = click.File("r", encoding="utf-8", errors="surrogateescape")
