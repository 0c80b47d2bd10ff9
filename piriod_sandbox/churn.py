"""Churn on cue: other clients deleting and late-inserting customers while a list is read.

A listing read by page number moves when a row before the read position is deleted, or
when a late-committing transaction inserts one with an earlier ``created``. To test a
reader against that deterministically (not by timing), the sandbox applies a churn plan
*exactly before answering* given list requests, counted by the server:

* ``at``: the list request (1-based, counted from when the plan was set) before which
  the first churn is applied; ``every``: then again every that many list requests
  (0: once); ``times``: at most that many churns (0: no limit when ``every`` is set);
* ``deletes`` customers deleted and ``inserts`` customers inserted per churn, among the
  first ``within`` customers in creation order (0: anywhere), inserts stamped with a
  ``created`` between two existing rows and ``updated`` now; ``insert_from`` > 0 puts
  the inserts after that row (0-based) of the whole list instead (a delete behind the
  read and an insert ahead of it: a move that changes no count);
* ``rng_seed`` makes the choice of rows repeatable.

``GET /_sandbox/churn`` answers the plan with what it did: list requests counted,
churns applied, ids deleted and inserted.
"""

from __future__ import annotations

import random
import threading
from dataclasses import asdict, dataclass, field

from piriod_sandbox.store import CustomerStore


@dataclass
class ChurnPlan:
    """When and how much the listing moves (see the module docstring)."""

    at: int = 0  # 0: no churn
    every: int = 0
    times: int = 0
    deletes: int = 0
    inserts: int = 0
    within: int = 0
    insert_from: int = 0
    rng_seed: int | None = None

    @classmethod
    def from_dict(cls, data: dict) -> ChurnPlan:
        """Build a plan from JSON; unknown keys and negative numbers are errors (a 400)."""
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown churn setting(s): {', '.join(sorted(unknown))}")
        plan = cls(**data)
        numbers = (plan.at, plan.every, plan.times, plan.deletes, plan.inserts, plan.within,
                   plan.insert_from)
        if any(type(value) is not int or value < 0 for value in numbers):
            raise ValueError("churn settings are non-negative integers")
        return plan


@dataclass
class Churner:
    """Counts list requests and applies the plan before the ones it names. Thread-safe."""

    plan: ChurnPlan = field(default_factory=ChurnPlan)
    list_requests: int = 0
    applied: int = 0
    deleted: list[str] = field(default_factory=list)
    inserted: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._rng = random.Random(self.plan.rng_seed)

    def configure(self, plan: ChurnPlan) -> None:
        """Replace the plan; counters and the record of what was done restart."""
        with self._lock:
            self.plan, self.list_requests, self.applied = plan, 0, 0
            self.deleted, self.inserted = [], []
            self._rng = random.Random(plan.rng_seed)

    def before_list_request(self, store: CustomerStore) -> None:
        """Count a list request; churn first if the plan says this one."""
        with self._lock:  # held while churning: the request waits, as is the point
            self.list_requests += 1
            if not self._due():
                return
            self.applied += 1
            deleted, inserted = store.churn(self.plan.deletes, self.plan.inserts,
                                            self.plan.within, self._rng,
                                            self.plan.insert_from)
            self.deleted += deleted
            self.inserted += inserted

    def report(self) -> dict:
        """Return the plan and what it did so far."""
        with self._lock:
            return {**asdict(self.plan), "list_requests": self.list_requests,
                    "applied": self.applied, "deleted": list(self.deleted),
                    "inserted": list(self.inserted)}

    def _due(self) -> bool:
        plan, n = self.plan, self.list_requests
        if not plan.at or n < plan.at:
            return False
        if plan.times and self.applied >= plan.times:
            return False
        if n == plan.at:
            return True
        return bool(plan.every) and (n - plan.at) % plan.every == 0
