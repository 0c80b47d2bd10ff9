r"""Fast Singer output: the SDK's messages, encoded by orjson and written in one go per page.

The SDK's writer encodes each message with simplejson and flushes stdout after every
message (a system call per record). This writer produces the same messages with the same
values:

* orjson encodes them, an order of magnitude faster. Decimals (amounts, read from the
  API as Decimal) are written with ``str()``, exactly as simplejson's ``use_decimal``
  does; NaN and infinities become ``null`` (simplejson's ``ignore_nan``); datetimes
  use ``isoformat("T")``.
  Anything orjson would render differently, or cannot render (an integer beyond 64
  bits, a subclass of a built-in type, a non-string key...), makes that one message fall
  back to the SDK's own encoder. The one visible difference: non-ASCII text is written as
  UTF-8 rather than as ``\uXXXX`` escapes; JSON readers get the same strings.
* RECORD messages are written in one go when the stream has written a page (``flush()``),
  and every other message (SCHEMA, STATE...) is written and flushed at once, after any
  pending records: a reader still sees a STATE only after the records it covers.
"""

from __future__ import annotations

import datetime
import decimal
import sys
import typing as t

import orjson
from singer_sdk.singerlib.encoding import GenericSingerWriter, SingerMessageType
from singer_sdk.singerlib.json import serialize_json

if t.TYPE_CHECKING:
    from singer_sdk.singerlib.encoding.simple import Message

_RECORD = SingerMessageType.RECORD


def _orjson_default(value: object) -> object:
    """Encode what simplejson's ``use_decimal``/``default`` encode; refuse anything else."""
    kind = type(value)
    # ``kind is`` (faster than isinstance on this hot path) narrows nothing for mypy: the
    # two ignores below are for a value known to be a Decimal, then a datetime.
    if kind is decimal.Decimal:
        if not value.is_finite():  # type: ignore[attr-defined]
            return None  # simplejson's ignore_nan
        return orjson.Fragment(str(value).encode())
    if kind is datetime.datetime:
        return value.isoformat(sep="T")  # type: ignore[attr-defined]
    raise TypeError(kind.__name__)  # falls back to the SDK's encoder


# Hand datetimes, dataclasses and subclasses of built-ins to _orjson_default, which
# renders them as the SDK would or refuses them: orjson's own renderings differ.
_OPTIONS = (orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS
            | orjson.OPT_PASSTHROUGH_SUBCLASS | orjson.OPT_APPEND_NEWLINE)


def encode_message(message_dict: dict) -> bytes:
    """Return one Singer message as a JSON line (UTF-8, ending in a newline)."""
    try:
        return orjson.dumps(message_dict, default=_orjson_default, option=_OPTIONS)
    except TypeError:  # orjson.JSONEncodeError is a TypeError: the SDK's encoder decides
        pass
    return (serialize_json(message_dict) + "\n").encode()


class FastSingerWriter(GenericSingerWriter[bytes, "Message"]):
    """Writes Singer messages to stdout as bytes; RECORDs are written and flushed per page.

    RECORD lines are gathered in memory (at most ``MAX_PENDING_BYTES``) and written in one
    system call by ``flush()``, which the stream calls after each page; any other message
    writes them first, then itself, so the order on stdout is the order of the messages.
    """

    MAX_PENDING_BYTES = 1 << 20

    def __init__(self, *args: t.Any, **kwargs: t.Any) -> None:
        super().__init__(*args, **kwargs)
        self._pending = bytearray()

    def serialize_message(self, message: Message) -> bytes:
        """Serialize a message into one JSON line."""
        return encode_message(message.to_dict())

    def write_message(self, message: Message) -> None:
        """Write a message; RECORDs wait for ``flush`` (or a non-RECORD message)."""
        self._pending += self.serialize_message(message)
        if message.type != _RECORD or len(self._pending) >= self.MAX_PENDING_BYTES:
            self.flush()

    def flush(self) -> None:
        """Write what is pending and push it to the reader."""
        stdout = sys.stdout
        binary = getattr(stdout, "buffer", None)
        if self._pending:
            if binary is None:  # a text-only stream (e.g. io.StringIO in a test)
                stdout.write(self._pending.decode())
            else:
                binary.write(self._pending)
            self._pending.clear()
        (binary or stdout).flush()
