"""STATE messages, held until every record before them is handled, then passed on in order.

A STATE tells the orchestrator (Meltano) that the tap's output up to that point is safely
loaded: it is saved, and the next run starts after it. So a STATE must not come out
before every record that preceded it is written, unchanged, skipped or dead-lettered.
Waiting for all writes in flight at each STATE would stop the overlap between batches
(a tap that checkpoints every batch would make every batch wait for the last), so each
STATE is held with its *position* (how many records came before it) and passed on once
the Loader's ``handled`` count reaches that position, while later records are read and
written. When several are ready at once only the newest is passed on: it supersedes
the others, which say less.

An empty STATE (``{}``) is never passed on: Meltano would save it and the next run would
start from nothing.
"""

from __future__ import annotations

import json
from collections import deque


class HeldStates:
    """The STATEs received and not yet passed on, each with its position in the input."""

    def __init__(self) -> None:
        self._held: deque[tuple[int, dict]] = deque()
        self._last_json: str | None = None

    def __len__(self) -> int:
        return len(self._held)

    def hold(self, state: dict | None, position: int) -> bool:
        """Hold a STATE that follows ``position`` records; False if it is empty (dropped)."""
        if not state:
            return False
        self._held.append((position, state))
        return True

    def ready(self, handled: int) -> dict | None:
        """Return the newest STATE whose records are all handled, if not passed on already."""
        newest = None
        while self._held and self._held[0][0] <= handled:
            newest = self._held.popleft()[1]
        if newest is None:
            return None
        newest_json = json.dumps(newest, sort_keys=True)
        if newest_json == self._last_json:
            return None
        self._last_json = newest_json
        return newest
