"""The one retry policy of both connectors: what is retried, and how long to wait.

* 429 is the API asking for patience: the wait is what ``Retry-After`` asks (seconds or
  an HTTP date), capped at ``RETRY_AFTER_CAP_SECONDS``. A longer (or nonsensical) ask is
  logged and treated as the cap: a run must never plan to sleep for a day because a
  proxy said so. 429s get a larger attempt budget than failures, since under a rate
  limit they are expected.
* 5xx, timeouts, dropped connections and unreadable bodies are retried with exponential
  backoff and full jitter (``backoff_seconds``), up to ``max_retries`` times.
* Everything else (4xx) is final.

``Throttle`` is the shared gate: one 429 pauses every thread of the run, and the request
rate then adapts (AIMD) instead of every thread hammering the API and sleeping alone.
"""

from __future__ import annotations

import collections
import email.utils
import logging
import math
import random
import threading
import time
from dataclasses import dataclass, field

LOGGER = logging.getLogger("piriod")

BACKOFF_BASE_SECONDS = 0.25
BACKOFF_CAP_SECONDS = 30.0
RETRY_AFTER_DEFAULT_SECONDS = 1.0
RETRY_AFTER_CAP_SECONDS = 300.0
THROTTLED_ATTEMPTS_FACTOR = 10  # 429 budget: this many times the failure budget


def backoff_seconds(attempt: int) -> float:
    """Return the wait before retry number ``attempt`` (0-based): 0.25 s, 0.5 s, 1 s...

    Jittered between half and all of the exponential step, so that threads (or runs)
    that failed together do not come back together.
    """
    ceiling = min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2 ** min(attempt, 30))
    return ceiling * random.uniform(0.5, 1.0)


def retry_after_seconds(value: str | None, *, now: float | None = None) -> float:
    """Return the wait a ``Retry-After`` header asks for, within ``[0, cap]``.

    Absent or unreadable: ``RETRY_AFTER_DEFAULT_SECONDS``. ``inf``, ``nan``, negative
    numbers and dates in the past are read as what they can sensibly mean (the cap, the
    default, no wait, no wait). A wait above the cap is logged: the run goes on after
    the cap, and if the API still refuses, the 429 budget ends it with a clear error.
    """
    if not value or not value.strip():
        return RETRY_AFTER_DEFAULT_SECONDS
    seconds = _as_seconds(value.strip(), time.time() if now is None else now)
    if seconds is None:
        return RETRY_AFTER_DEFAULT_SECONDS
    if seconds > RETRY_AFTER_CAP_SECONDS:
        LOGGER.warning("The API asked to wait %r; waiting the cap of %.0f s instead",
                       value[:40], RETRY_AFTER_CAP_SECONDS)
        return RETRY_AFTER_CAP_SECONDS
    return max(0.0, seconds)


def _as_seconds(value: str, now: float) -> float | None:
    """Read delta-seconds or an HTTP date; None if it is neither (or NaN)."""
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = email.utils.parsedate_to_datetime(value).timestamp() - now
        except (TypeError, ValueError, OverflowError):
            return None
    return None if math.isnan(seconds) else seconds


@dataclass
class Throttle:
    """Shared pacing for all threads: a "not before" gate plus an AIMD request rate.

    Until the first 429 there is no pacing. A 429 closes the gate for ``Retry-After``
    seconds (for every thread) and sets a rate under the rate the API was accepting just
    before, after which requests are spaced evenly; the rate then creeps up slowly
    (additive increase) and is cut again (multiplicative decrease) by the next 429. The
    429s of one burst (several threads hit at once) count as one decrease.
    """

    increase_per_second: float = 0.02  # fraction of the rate regained per second
    decrease_factor: float = 0.75
    min_evidence: int = 3  # accepted requests needed before a rate is estimated
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _first_at: float | None = None
    _not_before: float = 0.0
    _next_slot: float = 0.0
    _rate: float | None = None
    _rate_set_at: float = 0.0
    _cooldown_until: float = 0.0
    _successes: collections.deque = field(default_factory=lambda: collections.deque(maxlen=4096))
    throttled: int = 0

    @property
    def rate(self) -> float | None:
        """Return the current paced rate in requests per second (None: unpaced)."""
        with self._lock:
            return self._current_rate(time.monotonic())

    def delay(self) -> float:
        """Reserve this thread's next slot and return how long to wait for it."""
        with self._lock:
            now = time.monotonic()
            if self._first_at is None:
                self._first_at = now
            slot = max(now, self._not_before)
            rate = self._current_rate(now)
            if rate:
                slot = max(slot, self._next_slot)
                self._next_slot = slot + 1.0 / rate
        return max(0.0, slot - time.monotonic())

    def on_success(self) -> None:
        """Record an accepted request (the measure of what the API lets through)."""
        with self._lock:
            self._successes.append(time.monotonic())

    def on_throttled(self, retry_after: float) -> None:
        """Close the gate for ``retry_after`` seconds and lower the rate (once per burst)."""
        with self._lock:
            now = time.monotonic()
            self.throttled += 1
            self._not_before = max(self._not_before, now + retry_after)
            if now < self._cooldown_until:
                return
            self._cooldown_until = now + retry_after + 0.5
            current = self._current_rate(now)
            if current is None:
                current = self._accepted_rate(now)
                if current is None:
                    return  # no evidence of a rate yet: the gate alone
            self._rate = max(1.0, current * self.decrease_factor)
            self._rate_set_at = now + retry_after

    def _accepted_rate(self, now: float) -> float | None:
        """Return the accepted requests per second over the last second (or since start)."""
        window = min(1.0, max(0.05, now - (self._first_at or now)))
        accepted = sum(1 for stamp in self._successes if stamp > now - window)
        return accepted / window if accepted >= self.min_evidence else None

    def _current_rate(self, now: float) -> float | None:
        if self._rate is None:
            return None
        grown = max(0.0, now - self._rate_set_at) * self.increase_per_second
        return self._rate * (1.0 + grown)
