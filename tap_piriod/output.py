r"""Fast Singer output: the SDK's messages, encoded by orjson and written in one go per page.

The SDK's writer encodes each message with simplejson (~25 µs for a customer) and flushes
stdout after every message (a system call per record). This writer produces the same
messages with the same values:

* orjson encodes them (~2 µs). Decimals (amounts, read from the API as Decimal) are
  written with ``str()``, exactly as simplejson's ``use_decimal`` does; NaN and infinities
  become ``null`` (simplejson's ``ignore_nan``); datetimes use ``isoformat("T")``.
  Anything orjson would render differently, or cannot render (an integer beyond 64
  bits, a subclass of a built-in type, a non-string key...), makes that one message fall
  back to the SDK's own encoder. The one visible difference: non-ASCII text is written as
  UTF-8 rather than as ``\uXXXX`` escapes; JSON readers get the same strings.
* RECORD messages are flushed when the stream has written a page (``flush()``), and every
  other message (SCHEMA, STATE...) is flushed at once, as before: a reader still sees
  a STATE only after the records it covers, and each page's records before the next
  request is sent.
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
    """Writes Singer messages to stdout as bytes; RECORDs are flushed per page."""

    def serialize_message(self, message: Message) -> bytes:
        """Serialize a message into one JSON line."""
        return encode_message(message.to_dict())

    def write_message(self, message: Message) -> None:
        """Write a message; flush unless it is a RECORD (see ``flush``)."""
        stdout = sys.stdout
        line = self.serialize_message(message)
        binary = getattr(stdout, "buffer", None)
        if binary is None:  # a text-only stream (e.g. io.StringIO in a test)
            stdout.write(line.decode())
        else:
            binary.write(line)
        if message.type != _RECORD:
            self.flush()

    def flush(self) -> None:
        """Push buffered messages to the reader."""
        binary = getattr(sys.stdout, "buffer", None)
        (binary or sys.stdout).flush()
