"""Fault and latency injection: which request gets which misbehaviour.

A plan combines a script (the nth request, optionally of one method, gets a named fault),
random faults by probability, a token-bucket rate limit answering 429, fixed latency, and
switches that make the server behave like a less helpful API (ignoring ordering and date
filters or refusing them with 400, rendering timestamps in mixed UTC offsets, a clock that
is off). A broken listing (``list_fault``) gives every list request from a page number
on, or after some list requests, the same fault until the plan is replaced: a full-table
reconcile killed halfway, which must then delete nothing.
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import asdict, dataclass, field, fields
from urllib.parse import parse_qs

# Faults a server answers with a status (the body is JSON unless the name says html).
STATUS_FAULTS = {"429": 429, "500": 500, "502": 502, "503": 503, "500_html": 500,
                 "502_html": 502, "503_html": 503}
# Faults that change how (or whether) a normal answer is delivered.
DELIVERY_FAULTS = {"drop", "drop_after", "slow", "malformed"}
FAULTS = set(STATUS_FAULTS) | DELIVERY_FAULTS


@dataclass
class FaultPlan:
    """What the sandbox does wrong, and when. Every field has a harmless default."""

    latency_ms: float = 0.0
    script: list[dict] = field(default_factory=list)
    random: dict[str, float] = field(default_factory=dict)
    random_methods: list[str] | None = None
    seed: int = 0
    retry_after: int = 1
    slow_ms: int = 3000
    rate_limit: float = 0.0
    ignore_params: bool = False
    mixed_offsets: bool = False
    clock_offset_s: float = 0.0
    reject_params: list[str] = field(default_factory=list)  # list params answered with 400
    no_links: bool = False  # list pages of count and results only: no next/previous
    # A broken listing: GET /customers/ answers list_fault (any name in FAULTS), every
    # time, for pages numbered list_fault_from_page or more, once list_fault_after list
    # requests have been answered (both conditions hold). None: listings work.
    list_fault: str | None = None
    list_fault_from_page: int = 1
    list_fault_after: int = 0

    @classmethod
    def from_dict(cls, values: dict) -> FaultPlan:
        """Build a plan from JSON, refusing unknown keys and fault names loudly."""
        known = {f.name for f in fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"unknown fault plan keys: {sorted(unknown)}")
        plan = cls(**values)
        names = [entry.get("fault") for entry in plan.script] + list(plan.random)
        names += [plan.list_fault] if plan.list_fault is not None else []
        bad = [name for name in names if name not in FAULTS]
        if bad:
            raise ValueError(f"unknown faults {bad}; known: {sorted(FAULTS)}")
        return plan

    def to_dict(self) -> dict:
        """Return the plan as JSON-ready data."""
        return asdict(self)


class FaultInjector:
    """Decides, request by request, which fault (if any) applies. Thread-safe."""

    def __init__(self, plan: FaultPlan | None = None) -> None:
        self._lock = threading.Lock()
        self.configure(plan or FaultPlan())

    def configure(self, plan: FaultPlan) -> None:
        """Replace the plan and restart its counters."""
        with self._lock:
            self.plan = plan
            self._rng = random.Random(plan.seed)
            self._seen_total = 0
            self._seen_by_method: dict[str, int] = {}
            self._lists_seen = 0
            self._tokens = plan.rate_limit
            self._refilled_at = time.monotonic()
            self.injected: dict[str, int] = {}

    def pick(self, method: str, path: str = "", query: str = "") -> str | None:
        """Count this request and return the fault it gets, or None.

        ``path`` and ``query`` matter only to a broken listing (which list page is asked).
        """
        with self._lock:
            self._seen_total += 1
            nth_of_method = self._seen_by_method[method] = self._seen_by_method.get(method, 0) + 1
            is_list = method == "GET" and path.strip("/") == "customers"
            self._lists_seen += is_list
            fault = self._scripted(method, nth_of_method)
            fault = fault or (self._broken_listing(query) if is_list else None)
            fault = fault or self._rate_limited()
            fault = fault or self._random(method)
            if fault:
                self.injected[fault] = self.injected.get(fault, 0) + 1
            return fault

    def _scripted(self, method: str, nth_of_method: int) -> str | None:
        for entry in self.plan.script:
            wanted = entry.get("method")
            nth = nth_of_method if wanted else self._seen_total
            if (wanted is None or wanted.upper() == method) and entry.get("nth") == nth:
                return entry["fault"]
        return None

    def _broken_listing(self, query: str) -> str | None:
        plan = self.plan
        if plan.list_fault is None or self._lists_seen <= plan.list_fault_after:
            return None
        return plan.list_fault if _page_number(query) >= plan.list_fault_from_page else None

    def _rate_limited(self) -> str | None:
        rate = self.plan.rate_limit
        if rate <= 0:
            return None
        now = time.monotonic()
        self._tokens = min(rate, self._tokens + (now - self._refilled_at) * rate)
        self._refilled_at = now
        if self._tokens >= 1:
            self._tokens -= 1
            return None
        return "429"

    def _random(self, method: str) -> str | None:
        methods = self.plan.random_methods
        if methods and method not in {m.upper() for m in methods}:
            return None
        for fault, probability in self.plan.random.items():
            if self._rng.random() < probability:
                return fault
        return None


def _page_number(query: str) -> int:
    """Return a list request's page number as the API reads it (page 1 when absent)."""
    try:
        return int(parse_qs(query).get("page", ["1"])[-1])
    except ValueError:
        return 1
