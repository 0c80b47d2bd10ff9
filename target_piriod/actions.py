"""What planning produces: actions with a closed set of kinds, and why records are refused.

These are plain data, shared by the planner (``target_piriod.plan``), the writes
(``target_piriod.write``), the ``Loader`` and the reporting (``target_piriod.report``).
They live apart from all of them so that the I/O-free planner imports no reporting code.
``Kind`` is closed: code that acts on a kind ``match``es it and ends with
``assert_never``, so the type checker names every place a new kind would have to reach.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

from target_piriod.keys import Key


class Kind(enum.Enum):
    """What an action does to its customer."""

    CREATE = "create"
    UPDATE = "update"  # a PATCH of only what differs
    UNCHANGED = "unchanged"  # matched, nothing differs: no write
    SKIP = "skip"  # matched, and the mode is create_only: no write


@dataclass
class Rejection:
    """Why records were refused: by validation, by matching, or by the API (a 4xx)."""

    reason: str
    message: str
    status: int | None = None
    error: Any = None


@dataclass
class Item:
    """One valid incoming record, its key and its write payload."""

    record: dict
    key: Key
    payload: dict


@dataclass
class Action:
    """What to do for one customer; ``current`` is the customer matched (None: create)."""

    kind: Kind
    key: Key
    items: list[Item]
    payload: dict
    current: dict | None = None
    changes: dict = field(default_factory=dict)
    batch: int = 0  # the batch that planned it (the Loader counts handled records by batch)

    @property
    def records(self) -> list[dict]:
        """Return the incoming records this action carries out."""
        return [item.record for item in self.items]

    @property
    def customer_id(self) -> str:
        """Return the id of the matched customer an update or skip is about."""
        if self.current is None:
            raise AssertionError(f"a {self.kind.value} action without a matched customer")
        return str(self.current["id"])


@dataclass
class Refusal:
    """Records that planning refused, with their key (if any) and why."""

    records: list[dict]
    key: Key | None
    rejection: Rejection


@dataclass
class Plan:
    """A planned batch: the actions to take, the refusals, and how many were merged."""

    actions: list[Action] = field(default_factory=list)
    refusals: list[Refusal] = field(default_factory=list)

    @property
    def merged(self) -> int:
        """Return how many records were folded into another with the same key."""
        return sum(len(action.items) - 1 for action in self.actions)
