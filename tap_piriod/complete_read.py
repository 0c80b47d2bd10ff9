"""The ids of the last complete FULL_TABLE read: a reconcile deletes only what Piriod says is gone.

ACTIVATE_VERSION tells the loader to delete every row the read did not bring. A read
that settled (``piriod.listing``) has seen no evidence of movement, but a delete of a row
already read and an insert beyond the read position between the same two observations
leave no evidence at all, and one live customer would be missed, then deleted. So the
state keeps the ids of the last complete read; an id it had that this read lacks is
fetched by id (``GET /customers/{id}/``) before ACTIVATE_VERSION: 200 and it is emitted,
404 and it is truly gone. What is left: a customer created after the previous complete
read *and* missed by this one (no read of ours ever saw it to remember it).

Stored as the sorted ids joined by newlines, zlib-compressed, base64: ~10 bytes a
customer (about 1.3 MB of state at 100,000). During the read the ids are appended to one
byte buffer (13 bytes a customer), not kept as Python strings.
"""

from __future__ import annotations

import base64
import binascii
import zlib

STATE_KEY = "complete_read"


class ReadIds:
    """The ids a FULL_TABLE read brought, compared with those of the previous complete one."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def add(self, customer_id: object) -> None:
        """Remember an id (one that cannot be a path segment could not be fetched anyway)."""
        text = str(customer_id)
        if "\n" not in text:
            self._buffer += text.encode("utf-8", "surrogatepass") + b"\n"

    def missing_from(self, stored: object) -> list[str]:
        """Return the ids of the stored complete read that this read did not bring."""
        previous = _decode(stored)
        if previous:
            previous.difference_update(bytes(self._buffer).split(b"\n"))
        return sorted(customer_id.decode("utf-8", "surrogatepass") for customer_id in previous)

    def to_state(self, also: list[str]) -> dict:
        """Return the state entry for this read, plus ids found by id (``also``)."""
        ids = set(bytes(self._buffer).split(b"\n"))
        ids.update(customer_id.encode("utf-8", "surrogatepass") for customer_id in also)
        ids.discard(b"")
        packed = zlib.compress(b"\n".join(sorted(ids)), 6)
        return {"count": len(ids), "ids": base64.b64encode(packed).decode("ascii")}


def _decode(stored: object) -> set[bytes]:
    """Read a state entry's ids; anything unreadable is none (no check, as on a first run)."""
    if not isinstance(stored, dict) or not isinstance(stored.get("ids"), str):
        return set()
    try:
        packed = zlib.decompress(base64.b64decode(stored["ids"], validate=True))
    except (binascii.Error, ValueError, zlib.error):
        return set()
    return {customer_id for customer_id in packed.split(b"\n") if customer_id}
