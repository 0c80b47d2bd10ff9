"""RECORD messages with no record to load: dead-lettered (``invalid``), the load goes on.

A RECORD without a ``stream`` name, without a ``record``, or whose record is not an
object (an array, a string, null...) is rejected with the line it came on; a RECORD for
a stream that had no SCHEMA stops the run, as a line that is not a Singer message does
(``target_piriod.reader``): its records cannot be read as anything.
"""

from __future__ import annotations

from collections.abc import Callable, Container
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from singer_sdk.exceptions import RecordsWithoutSchemaException

from target_piriod.jsonsafe import quote
from target_piriod.loader import LoadError


class RecordBeforeSchemaError(LoadError, RecordsWithoutSchemaException):
    """A RECORD for a stream that had no SCHEMA (the SDK's error, without a traceback)."""


@dataclass
class BadRecord:
    """What is wrong with a RECORD message; ``fatal``: the run stops, else dead-lettered."""

    record: Any
    reason: str
    fatal: bool = False


def bad_record(message: dict, where: Callable[[], str], *, known: Container[str],
               dropped: Callable[[str], bool]) -> BadRecord | None:
    """Return what is wrong with a RECORD message, or None if it has a record to load.

    ``where`` names the input line (built only when needed); ``known`` holds the streams
    that had a SCHEMA; a stream ``dropped`` by stream_maps is not looked into.
    """
    stream, record = message.get("stream"), message.get("record")
    if not isinstance(stream, str):
        problem = "without 'stream'" if "stream" not in message else \
            f"whose 'stream' is not a name ({quote(repr(stream))})"
        return BadRecord(record, f"{where()}: a RECORD message {problem}")
    if stream not in known:
        return BadRecord(record, f"{where()}: a RECORD for stream {quote(stream)} before "
                                 "its SCHEMA", fatal=True)
    if dropped(stream):
        return None
    if "record" not in message:
        return BadRecord(None, f"{where()}: a RECORD message with no 'record'")
    if not isinstance(record, dict):
        return BadRecord(record, f"{where()}: the record is {json_kind(record)}, not an "
                                 "object")
    return None


def json_kind(value: Any) -> str:
    """Return what a JSON value is, in JSON's words (``an array``, ``null``...)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "a number" if isinstance(value, int | float | Decimal) else \
        f"a {type(value).__name__}"
