"""The customer index: every customer of the account by id and by match key, compactly.

Read once per run (one paged read of ``/customers/``) and kept up to date with what the
run creates and patches, so that later batches match the customers earlier ones created.
It holds only what matching and diffing need: per customer its id, its match key, and
its writable attributes packed as one JSON array (``_pack``), a fraction of the API's
whole document as Python objects (docs/benchmarks.md has the measured sizes). ``get``
and ``find`` rebuild the write shape on demand, for the few customers a load touches.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

import orjson

from target_piriod.diff import WRITABLE, customer_shape
from target_piriod.keys import KeySpec


class CustomerIndex:
    """Customers by id and by match key (``KeySpec``). Thread-safe."""

    def __init__(self, spec: KeySpec) -> None:
        self.spec = spec
        self._lock = threading.Lock()
        self._by_id: dict[str, bytes | dict] = {}
        self._by_key: dict[str, tuple[str, ...]] = {}  # a tuple: far smaller than a set

    def __len__(self) -> int:
        with self._lock:
            return len(self._by_id)

    def add_all(self, customers: Iterable[dict]) -> None:
        """Add API customers (read shape)."""
        for customer in customers:
            self.add(customer)

    def add(self, customer: dict) -> dict:
        """Add or replace one API customer (read shape); return its write shape."""
        shaped = customer_shape(customer)
        customer_id, packed = shaped["id"], _pack(shaped)
        value = self.spec.value_of(shaped)
        with self._lock:
            old = self._by_id.get(customer_id)
            if old is not None:
                self._unlink(customer_id, _unpack(customer_id, old))
            self._by_id[customer_id] = packed
            if value is not None:
                ids = self._by_key.get(value, ())
                if customer_id not in ids:
                    self._by_key[value] = (*ids, customer_id)
        return shaped

    def get(self, customer_id: str) -> dict | None:
        """Return a customer (write shape) by id."""
        with self._lock:
            packed = self._by_id.get(customer_id)
        return None if packed is None else _unpack(customer_id, packed)

    def find(self, value: str) -> list[dict]:
        """Return the customers whose match key equals ``value`` (normally zero or one)."""
        with self._lock:
            found = [(cid, self._by_id[cid]) for cid in sorted(self._by_key.get(value, ()))]
        return [_unpack(cid, packed) for cid, packed in found]

    def _unlink(self, customer_id: str, shaped: dict) -> None:
        value = self.spec.value_of(shaped)
        if value is None:
            return
        ids = self._by_key.get(value)
        if ids:
            rest = tuple(cid for cid in ids if cid != customer_id)
            if rest:
                self._by_key[value] = rest
            else:
                del self._by_key[value]


def _pack(shaped: dict) -> bytes | dict:
    """Return a write shape as a JSON array of its WRITABLE values (no names, no id).

    Absent and null attributes are both stored as null: diffing reads them alike. A
    shape that would not come back equal from JSON (an integer beyond 64 bits, NaN) is
    kept as the dict itself.
    """
    values = [shaped.get(name) for name in WRITABLE]
    try:
        packed = orjson.dumps(values)
    except TypeError:
        return dict(shaped)
    if orjson.loads(packed) != values:
        return dict(shaped)
    # orjson's bytes keep a 4 KB buffer whatever their length: keep an exact-size copy.
    return bytes(memoryview(packed))


def _unpack(customer_id: str, packed: bytes | dict) -> dict:
    """Return the write shape (with its id) of what ``_pack`` stored."""
    if isinstance(packed, dict):
        return dict(packed)
    shaped = {name: value for name, value in zip(WRITABLE, orjson.loads(packed), strict=True)
              if value is not None}
    shaped["metadata"] = shaped.get("metadata") or {}
    shaped["id"] = customer_id
    return shaped
