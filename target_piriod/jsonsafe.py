"""Values from hostile input: what JSON cannot carry, and texts short enough to quote.

A Singer line may hold what no JSON body can: ``NaN`` and ``Infinity`` (Python's json
reads them), numbers beyond a double (``1e400``), and text that is not Unicode: bytes
that are not UTF-8 (read from stdin with ``surrogateescape``, each such byte becomes a
lone surrogate U+DC80..U+DCFF) and lone surrogates spelled as JSON escapes (U+D800 to
U+DFFF). ``json_problems`` names each one with its path, so that the record is refused
before any request; ``strict_json`` turns a value into one JSON can hold (for the
dead-letter file, which must stay JSON whatever it is given); ``shorten`` cuts a value
quoted in a message or a log line to a few hundred characters.
"""

from __future__ import annotations

import datetime
import decimal
import json
import math
from typing import Any

MESSAGE_CHARS = 300  # a value quoted in a message or a log line is cut to about this
MAX_DEPTH = 64  # a value nested deeper is refused (recursion would crash the run)


class TooDeep:
    """What stands for a value nested deeper than ``MAX_DEPTH`` in a payload (refused)."""

    def __repr__(self) -> str:
        return f"<nested more than {MAX_DEPTH} levels deep>"


def shorten(text: str, limit: int = MESSAGE_CHARS) -> str:
    """Return ``text``, or its start and how long it was when longer than ``limit``."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… ({len(text)} characters)"


def abridge(text: str, limit: int = 2 * MESSAGE_CHARS) -> str:
    """Return ``text`` cut in the middle when longer than ``limit`` (an error's end says why)."""
    if len(text) <= limit:
        return text
    half = limit // 2
    return f"{text[:half]}…({len(text) - 2 * half} characters)…{text[-half:]}"


def shorten_values(value: Any, limit: int = MESSAGE_CHARS) -> Any:
    """Return a JSON value with every string (and key) in it shortened."""
    if isinstance(value, str):
        return shorten(value, limit)
    if isinstance(value, dict):
        return {shorten(str(key), limit): shorten_values(item, limit)
                for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [shorten_values(item, limit) for item in value]
    return value


def quote(text: str, limit: int = 60) -> str:
    """Return a short, printable, ASCII-escaped quotation of ``text`` (for messages)."""
    return shorten(ascii(text), limit)


def json_problems(value: Any, path: str = "") -> list[str]:
    """Return what in ``value`` a JSON body cannot carry, one message per problem.

    The usual value passes a quick check first (planning runs it on every record).
    """
    return [] if _clean(value) else list(_problems(value, path))


def _clean(value: Any) -> bool:
    """Return True if ``value`` is plainly JSON (exact types: anything else is looked at)."""
    kind = type(value)
    if kind is str:
        return value.isascii() or text_problem(value) is None
    if kind is dict:
        return all(_clean(key) and _clean(item) for key, item in value.items())
    if value is None or kind is int or kind is bool:
        return True
    if kind is float:
        return math.isfinite(value)
    if kind is list:
        return all(_clean(item) for item in value)
    return False


def _problems(value: Any, path: str) -> Any:
    where = path or "(record)"
    if isinstance(value, str):
        problem = text_problem(value)
        if problem:
            yield f"{where}: {problem}"
    elif isinstance(value, float | decimal.Decimal):
        if not _finite(value):
            spelling = _spelling(value)
            if spelling in ("NaN", "Infinity", "-Infinity"):
                yield f"{where}: {spelling} is not a JSON number"
            else:
                yield f"{where}: {quote(spelling)} is beyond the range of a JSON number"
    elif isinstance(value, dict):
        for key, item in value.items():
            name = key if isinstance(key, str) else repr(key)
            inner = f"{path}.{name}" if path else name
            problem = text_problem(key) if isinstance(key, str) else "a key that is not text"
            if problem:
                yield f"{path or '(record)'}: the key {quote(name)} is {problem}"
            yield from _problems(item, inner)
    elif isinstance(value, list | tuple):
        for number, item in enumerate(value):
            yield from _problems(item, f"{path}.{number}" if path else str(number))
    elif isinstance(value, TooDeep):
        yield f"{where}: nested more than {MAX_DEPTH} levels deep"
    elif not (value is None or isinstance(value, bool | int)):
        yield f"{where}: a {type(value).__name__} is not a JSON value"


def text_problem(text: str) -> str | None:
    """Return why ``text`` is not Unicode (UTF-8) text, or None if it is."""
    if text.isascii():
        return None
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        character = text[error.start]
        if "\udc80" <= character <= "\udcff":  # a byte read with surrogateescape
            what = f"byte 0x{ord(character) - 0xDC00:02x}"
        else:
            what = f"a lone surrogate U+{ord(character):04X}"
        return f"not UTF-8 text ({what} at character {error.start + 1}): {quote(text)}"
    return None


def strict_json(value: Any) -> Any:
    """Return ``value`` as JSON can hold it: NaN and infinities as the strings naming them.

    Decimals become numbers (strings if they are not finite), dates ISO strings, other
    objects their ``str``; text is left as it is (the writer escapes what is not UTF-8).
    """
    if isinstance(value, float | decimal.Decimal):
        if not _finite(value):
            return _spelling(value)
        return float(value) if isinstance(value, decimal.Decimal) else value
    if isinstance(value, dict):
        return {str(key): strict_json(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [strict_json(item) for item in value]
    if value is None or isinstance(value, str | bool | int):
        return value
    if isinstance(value, datetime.date | datetime.time):
        return value.isoformat()
    return str(value)


def _finite(number: float | decimal.Decimal) -> bool:
    """Return True for a number JSON can hold (a Decimal beyond a double's range is not)."""
    if isinstance(number, decimal.Decimal):
        return number.is_finite() and math.isfinite(float(number))
    return math.isfinite(number)


def _spelling(number: float | decimal.Decimal) -> str:
    if number.is_nan() if isinstance(number, decimal.Decimal) else math.isnan(number):
        return "NaN"
    if isinstance(number, decimal.Decimal) and number.is_finite():
        return str(number)  # beyond a double: its digits
    return "Infinity" if number > 0 else "-Infinity"


class _Text(str):
    """JSON text ready to be written as it is (``dumps_deep``)."""


def dumps_deep(value: Any) -> str:
    """Return ``value`` as ASCII JSON text (as ``strict_json`` holds it), without recursion.

    For what ``json.dumps`` cannot encode because it is nested too deeply: a dead letter
    still holds such a record whole.
    """
    out: list[str] = []
    stack: list[Any] = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, _Text):
            out.append(item)
        elif isinstance(item, dict):
            out.append("{")
            stack.append(_Text("}"))
            entries = list(item.items())
            for index in range(len(entries) - 1, -1, -1):  # pushed last first
                key, inner = entries[index]
                stack += [inner, _Text(json.dumps(str(key)) + ": ")]
                if index:
                    stack.append(_Text(", "))
        elif isinstance(item, list | tuple):
            out.append("[")
            stack.append(_Text("]"))
            for index in range(len(item) - 1, -1, -1):
                stack.append(item[index])
                if index:
                    stack.append(_Text(", "))
        else:
            out.append(json.dumps(strict_json(item)))
    return "".join(out)
