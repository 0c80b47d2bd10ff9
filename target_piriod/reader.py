"""Reading Singer messages from hostile input: every line counted, bad ones named.

The SDK's reader stops at a line that is not JSON, or not a message, with a traceback
that quotes the whole line (megabytes, maybe) and no summary. ``InputReader`` numbers the
lines and hands a line that is not a Singer message to ``on_bad_line`` (the target,
which finishes the writes in flight, prints the summary and stops with the line's
number), and skips messages of a type it does not know with a warning (a newer tap may
send them). Standard input is read with ``surrogateescape``, whatever the locale says, so
that bytes that are not UTF-8 reach the record they are in (and its dead letter) instead
of ending the run.

What a RECORD message lacks (``stream``, ``record``, a record that is an object) is not
decided here: the target dead-letters such a record and goes on.

``process_lines`` (the SDK's public hook; the target's ``listen`` is final) reads the
input through the run's ``Stopper``, so that a signal stops the reading between lines,
and hands the stop to ``on_stop`` (``target_piriod.signal_exit``).
"""

from __future__ import annotations

import io
import json
import logging
import sys
from collections import Counter
from collections.abc import Callable
from typing import IO, Any, NoReturn

from singer_sdk.singerlib.encoding import SimpleSingerReader
from singer_sdk.singerlib.exceptions import InvalidInputLine
from singer_sdk.singerlib.json import deserialize_json

from piriod.errors import StoppedError
from target_piriod.jsonsafe import quote
from target_piriod.stopping import Interrupted, Stopper

logger = logging.getLogger("target-piriod")  # the target's own logger (the SDK names it)

# What a message of each known type needs, besides its "type" (RECORD: see the target).
REQUIRED = {"SCHEMA": ("stream", "schema"), "STATE": ("value",),
            "ACTIVATE_VERSION": ("stream", "version")}


class InputReader(SimpleSingerReader):
    """The SDK's reader, with line numbers, clear errors and unknown types skipped."""

    def __init__(self) -> None:
        super().__init__()
        self.line_number = 0
        self.on_bad_line: Callable[[str], NoReturn] | None = None
        self.stopper: Stopper | None = None  # the target's: a signal stops the reading
        self.on_stop: Callable[[], NoReturn] | None = None  # then this ends the run
        self._unknown_types: set[str] = set()

    @property
    def default_input(self) -> IO[str]:  # type: ignore[override]  # an SDK class attribute
        """Return standard input, read as UTF-8 whatever the locale says.

        JSON is UTF-8; bytes that are not are read as surrogate escapes (U+DC80..U+DCFF).
        """
        stdin = sys.stdin
        if isinstance(stdin, io.TextIOWrapper) and (
                stdin.encoding.lower().replace("-", "") != "utf8"
                or stdin.errors != "surrogateescape"):
            stdin.reconfigure(encoding="utf-8", errors="surrogateescape")
        return stdin

    def process_lines(self, file_input: IO[str] | None,
                      callbacks: dict[str, Callable[[dict], None]]) -> Counter[str]:
        """Read and process the input; after a signal, stop through ``on_stop``."""
        if self.stopper is None or self.on_stop is None:
            return super().process_lines(file_input, callbacks)
        self.stopper.listening = True
        lines = self.stopper.lines(file_input or self.default_input)
        try:
            # The SDK only iterates its input: any iterable of lines does.
            return super().process_lines(lines, callbacks)  # type: ignore[arg-type]
        except (Interrupted, StoppedError):
            self.on_stop()

    def deserialize_json(self, line: str) -> dict:
        """Parse one line; a line that is not a Singer message stops the run, named."""
        self.line_number += 1
        where = f"line {self.line_number}"
        try:
            message = deserialize_json(line)
        except ValueError as error:
            reason = error.msg if isinstance(error, json.JSONDecodeError) else str(error)
            self.bad_line(f"{where} is not JSON ({reason}): {quote(line.rstrip(), 200)}")
        except RecursionError:
            self.bad_line(f"{where} is not JSON this reader can read (nested too deeply)")
        if not isinstance(message, dict) or not isinstance(message.get("type"), str):
            self.bad_line(f"{where} is not a Singer message (a JSON object with a 'type' "
                          f"name): {quote(line.rstrip(), 200)}")
        kind = message["type"]
        missing = [name for name in REQUIRED.get(kind, ()) if name not in message]
        if missing:
            self.bad_line(f"{where}: a {kind} message without {' or '.join(map(repr, missing))}")
        if kind == "SCHEMA" and not (isinstance(message["schema"], dict)
                                     and "properties" in message["schema"]):
            self.bad_line(f"{where}: a SCHEMA message whose 'schema' has no 'properties'")
        return message

    def bad_line(self, message: str) -> NoReturn:
        """Stop at a line that is not a Singer message (through ``on_bad_line``)."""
        if self.on_bad_line is not None:
            self.on_bad_line(message)
        raise InvalidInputLine(message)

    def _process_unknown_message(self, message_dict: dict[str, Any]) -> None:
        """Skip a message of a type the Singer spec does not define, with a warning."""
        kind = message_dict["type"]
        if kind not in self._unknown_types:
            self._unknown_types.add(kind)
            logger.warning("Skipping line %d: a message of unknown type %s (later ones of "
                           "that type are skipped silently)", self.line_number, quote(kind))
