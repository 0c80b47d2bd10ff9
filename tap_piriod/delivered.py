"""What a run delivered near the bookmark, remembered in the state as compact digests.

The lookback window makes each run re-read the customers updated in the last
``lookback_window`` seconds before the bookmark (a row committed late, stamped earlier,
is still read). Without memory, everything in that window would be emitted again, run
after run; a bulk update that put thousands of customers on one instant would re-send
them all every time. So the state keeps, for each customer delivered inside the window,
an 8-byte digest of its id and ``updated``; the next run skips a customer whose digest is
there (same id, same ``updated``: already delivered), and emits any other.

Every customer of the next window is read again by the run that writes the state (the
window only moves forward), so the set is rebuilt from what each run saw, never merged.
Above ``DIGEST_CAP`` customers in the window, only the newest ``DIGEST_CAP`` are kept and
the rest will be re-emitted once (at least once, never lost): logged when it happens.
"""

from __future__ import annotations

import base64
import hashlib
import logging

DIGEST_BYTES = 8
DIGEST_CAP = 100_000  # ~1.1 MB of state at the cap
STATE_KEY = "delivered"


def digest(customer_id: str, updated: str) -> bytes:
    """Return the digest of one delivered version of a customer."""
    return hashlib.blake2b(f"{customer_id}\x00{updated}".encode(),
                           digest_size=DIGEST_BYTES).digest()


class DeliveredSet:
    """The digests read from the state, and those seen by this run for the next one."""

    def __init__(self, stored: object, logger: logging.Logger) -> None:
        self.previous = _decode(stored)
        self.logger = logger
        self._seen: dict[bytes, str] = {}  # digest -> updated, of this run's window
        self._floor = ""  # entries updated before this can no longer be in the window
        self._prune_at = 50_000

    def already_delivered(self, customer_id: str, updated: str) -> bool:
        """Record that this run saw the customer; tell whether it was delivered before."""
        key = digest(customer_id, updated)
        if updated >= self._floor:
            self._seen[key] = updated
            if len(self._seen) >= self._prune_at:
                self._prune()
        return key in self.previous

    def raise_floor(self, floor: str) -> None:
        """Forget, from now on, customers updated before ``floor`` (outside any next window)."""
        self._floor = max(self._floor, floor)

    def to_state(self, floor: str) -> dict:
        """Return the state entry for the customers of the next window (from ``floor``)."""
        self.raise_floor(floor)
        kept = sorted((updated, key) for key, updated in self._seen.items()
                      if updated >= self._floor)
        if len(kept) > DIGEST_CAP:
            self.logger.warning(
                "%d customers were updated within the lookback window; the state keeps the "
                "newest %d, and the other %d will be emitted once more by the next run",
                len(kept), DIGEST_CAP, len(kept) - DIGEST_CAP)
            kept = kept[-DIGEST_CAP:]
        packed = b"".join(sorted(key for _, key in kept))
        return {"since": self._floor, "count": len(kept),
                "digests": base64.b64encode(packed).decode("ascii")}

    def _prune(self) -> None:
        self._seen = {key: updated for key, updated in self._seen.items()
                      if updated >= self._floor}
        self._prune_at = max(50_000, 2 * len(self._seen))


def _decode(stored: object) -> frozenset[bytes]:
    """Read the digests of a state entry; anything unreadable is an empty set."""
    if not isinstance(stored, dict) or not isinstance(stored.get("digests"), str):
        return frozenset()
    try:
        packed = base64.b64decode(stored["digests"], validate=True)
    except ValueError:
        return frozenset()
    return frozenset(packed[i:i + DIGEST_BYTES] for i in range(0, len(packed), DIGEST_BYTES)
                     if len(packed[i:i + DIGEST_BYTES]) == DIGEST_BYTES)
