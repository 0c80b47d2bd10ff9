"""HTTP client for the Piriod customers API: auth, pooling, retries and shared pacing.

Every request of a run goes through one ``PiriodClient``: one ``requests.Session`` whose
connection pool is at least as large as the number of writer threads (so keep-alive
connections are reused instead of re-opened), and one ``Throttle`` that all threads
consult before sending, so that a 429 slows the whole run down instead of every thread
hammering the API and sleeping on its own.

Retries are decided by whether repeating a request is safe. GET and PATCH are
idempotent, so they are retried on 5xx, timeouts, dropped connections and unparsable
bodies. A POST whose outcome is unknown (the server may have committed it) is *not*
retried here: ``OutcomeUnknownError`` goes back to the caller, which must look the key
up before posting again (see ``target_piriod.loader``).
"""

from __future__ import annotations

import collections
import email.utils
import json
import logging
import os
import random
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urljoin, urlsplit

import requests
from requests.adapters import HTTPAdapter

from piriod.pages import following_page
from target_piriod.transport import Reply, Transport

CUSTOMERS_PATH = "/customers/"
PAGE_SIZE = 100
BACKOFF_BASE_SECONDS = 0.25
BACKOFF_CAP_SECONDS = 20.0
RETRY_AFTER_CAP_SECONDS = 300.0
THROTTLED_ATTEMPTS_FACTOR = 10  # 429s are expected under a rate limit: a larger budget


class PiriodError(Exception):
    """Base of the errors this client raises; messages never contain the token."""


class ApiError(PiriodError):
    """A 4xx answer (other than 429): the API refused the request as sent."""

    def __init__(self, method: str, path: str, status: int, body: Any) -> None:
        self.method, self.path, self.status, self.body = method, path, status, body
        super().__init__(f"{method} {path} answered {status}: {_short(body)}")


class AuthError(ApiError):
    """401/403: no record can be loaded with these credentials, so the run stops."""


class RetriesExhaustedError(PiriodError):
    """A request kept failing with retryable errors until its attempts ran out."""


class OutcomeUnknownError(PiriodError):
    """A POST may or may not have been committed (5xx, timeout, dropped connection).

    ``timed_out`` tells the caller the server may *still* be working on it.
    """

    def __init__(self, message: str, *, timed_out: bool = False) -> None:
        super().__init__(message)
        self.timed_out = timed_out


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

    def wait(self) -> None:
        """Block until this thread may send its next request."""
        with self._lock:
            now = time.monotonic()
            if self._first_at is None:
                self._first_at = now
            slot = max(now, self._not_before)
            rate = self._current_rate(now)
            if rate:
                slot = max(slot, self._next_slot)
                self._next_slot = slot + 1.0 / rate
        delay = slot - time.monotonic()
        if delay > 0:
            time.sleep(delay)

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


class PiriodClient:
    """A thread-safe client for ``/customers/`` with pooled keep-alive connections."""

    def __init__(self, api_url: str, token: str, *, timeout: float = 30.0,
                 max_retries: int = 5, user_agent: str = "target-piriod",
                 pool_size: int = 4, logger: logging.Logger | None = None) -> None:
        self.base_url = api_url.rstrip("/") + "/"
        self.timeout = timeout
        self.max_retries = max(0, max_retries)
        self.throttle = Throttle()
        self._token = token
        self.pool_size = max(1, pool_size)
        self.session = _session(self.base_url, token, user_agent, pool_size)
        self.transport = Transport(self.session, self.base_url, timeout)
        self.requests_sent = 0
        self.retries = 0
        self.logger = logger or logging.getLogger("target_piriod.client")

    # -- the API -------------------------------------------------------------------------

    def iter_customers(self, params: dict[str, Any] | None = None) -> Iterator[dict]:
        """Yield every customer of a (possibly filtered) list, page by page.

        The index built from this list is what prevents duplicates, so a page that cannot
        be read as customers is an error, never an empty page. When the first page shows
        page-number pagination (DRF's ``?page=2`` links, or a ``count`` without links),
        the other pages are known at once and read ``pool_size`` at a time, in order:
        against a remote API an account's index read costs its pages' latency divided by
        the workers, not summed. Otherwise pages are followed one by one by their ``next``
        link (by its query only: the token never goes to another host). A bare JSON list
        is the whole list.
        """
        for page in self._list_pages({"page_size": PAGE_SIZE, **(params or {})}):
            yield from page_results(page)

    def _list_pages(self, query: dict[str, Any]) -> Iterator[Any]:
        """Yield the list's pages in order, checking each holds customers before it goes."""
        page = self.list_page(query)
        read = len(page_results(page))
        yield page
        numbered = _numbered_pages(page, query)
        if numbered and self.pool_size > 1:
            for page in self._pages_concurrently(numbered):
                read += len(page_results(page))
                yield page
            query = numbered[-1]
        while (following := _next_query(page, query, read)) is not None:
            query, page = following, self.list_page(following)
            read += len(page_results(page))
            yield page

    def list_page(self, query: dict[str, Any]) -> Any:
        """Return one page of the customer list, as the API answered it."""
        return self._call("GET", CUSTOMERS_PATH, params=query)

    def _pages_concurrently(self, queries: list[dict[str, Any]]) -> Iterator[Any]:
        """Yield the pages of ``queries`` in order, read on ``pool_size`` threads."""
        pool = ThreadPoolExecutor(self.pool_size, thread_name_prefix="target-piriod-index")
        try:
            yield from pool.map(self.list_page, queries)
        finally:  # a failed page stops the read: the pages not yet started are not sent
            pool.shutdown(wait=True, cancel_futures=True)

    def get_customer(self, customer_id: str) -> dict | None:
        """Return one customer, or None if the API does not know the id (404)."""
        try:
            return self._call("GET", f"{CUSTOMERS_PATH}{customer_id}/")
        except ApiError as error:
            if error.status == 404:
                return None
            raise

    def create_customer(self, payload: dict) -> dict:
        """POST a customer. Raises OutcomeUnknownError when it may have been committed."""
        return self._call("POST", CUSTOMERS_PATH, json_body=payload, idempotent=False)

    def update_customer(self, customer_id: str, changes: dict) -> dict:
        """PATCH the given attributes (idempotent: the same body twice is one change)."""
        return self._call("PATCH", f"{CUSTOMERS_PATH}{customer_id}/", json_body=changes)

    def backoff(self, attempt: int) -> None:
        """Sleep an exponentially growing, jittered delay before retry number ``attempt``."""
        ceiling = min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * (2 ** attempt))
        time.sleep(ceiling * random.uniform(0.5, 1.0))

    def redact(self, text: str) -> str:
        """Return ``text`` with the token blanked out (belt and braces for messages)."""
        return text.replace(self._token, "***") if self._token else text

    def close(self) -> None:
        """Close pooled connections."""
        self.session.close()

    # -- the retry loop ------------------------------------------------------------------

    def _call(self, method: str, path: str, *, params: dict | None = None,
              json_body: dict | None = None, idempotent: bool = True) -> Any:
        """Send one logical request, retrying what is safe to retry, and return its JSON."""
        failures = throttled = 0
        while True:
            self.throttle.wait()
            outcome = self._attempt(method, path, params, json_body)
            if isinstance(outcome, _Throttled):
                throttled += 1
                if throttled > (self.max_retries + 1) * THROTTLED_ATTEMPTS_FACTOR:
                    raise RetriesExhaustedError(f"{method} {_path(path)} still throttled (429) "
                                                f"after {throttled} attempts")
                self.throttle.on_throttled(outcome.retry_after)
                self.logger.debug("%s %s throttled (429): waiting %.2f s", method,
                                  _path(path), outcome.retry_after)
                continue
            if not isinstance(outcome, _Transient):
                self.throttle.on_success()
                return outcome
            if not idempotent and not outcome.not_sent:
                raise OutcomeUnknownError(f"{method} {_path(path)}: {outcome.reason}",
                                          timed_out=outcome.timed_out)
            failures += 1
            if failures > self.max_retries:
                raise RetriesExhaustedError(f"{method} {_path(path)} failed after {failures} "
                                            f"attempts; last error: {outcome.reason}")
            self.retries += 1
            self.logger.warning("%s %s failed (%s): retry %d of %d", method, _path(path),
                                outcome.reason, failures, self.max_retries)
            self.backoff(failures - 1)

    def _attempt(self, method: str, path: str, params: dict | None,
                 json_body: dict | None) -> Any:
        """Send once; return the parsed JSON, a _Throttled or a _Transient, or raise."""
        self.requests_sent += 1
        try:
            reply = self.transport.send(method, urljoin(self.base_url, path.lstrip("/")),
                                        params, json_body)
        except requests.exceptions.ConnectTimeout as error:
            return _Transient(f"connect timeout ({type(error).__name__})", not_sent=True)
        except requests.exceptions.Timeout as error:
            return _Transient(f"timeout after {self.timeout}s ({type(error).__name__})",
                              timed_out=True)
        except requests.exceptions.ConnectionError as error:
            return _Transient(f"connection error ({_reason(error)})",
                              not_sent=_never_connected(error))
        except requests.exceptions.RequestException as error:
            return _Transient(f"request failed ({type(error).__name__})")
        return self._classify(method, path, reply)

    def _classify(self, method: str, path: str, reply: Reply) -> Any:
        status = reply.status
        if status == 429:
            return _Throttled(_retry_after(reply.headers.get("Retry-After")))
        if status >= 500:
            return _Transient(f"HTTP {status} {_short(_body(reply))}")
        if status >= 400:
            error_class = AuthError if status in (401, 403) else ApiError
            raise error_class(method, _path(path), status, _body(reply))
        try:
            return json.loads(reply.data)
        except ValueError:
            return _Transient(f"HTTP {status} with an unparsable body")


@dataclass
class _Throttled:
    retry_after: float


@dataclass
class _Transient:
    reason: str
    not_sent: bool = False
    timed_out: bool = False


def _session(base_url: str, token: str, user_agent: str, pool_size: int) -> requests.Session:
    session = requests.Session()
    adapter = HTTPAdapter(pool_connections=2, pool_maxsize=max(pool_size, 1) + 2,
                          max_retries=0, pool_block=True)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.headers.update({"Authorization": f"Bearer {token}", "User-Agent": user_agent,
                            "Accept": "application/json"})
    _settle_environment(session, base_url)
    return session


def _settle_environment(session: requests.Session, base_url: str) -> None:
    """Read the proxy and CA-bundle variables once, then stop requests re-reading them.

    With ``trust_env`` on, requests looks up the proxy variables (and ``~/.netrc``) again
    for every request: ~0.3 ms of CPU each, under the GIL the writer threads share. Every
    request of a run goes to one host, so the answer is the same each time: resolve it
    here. ``~/.netrc`` is deliberately not read: its credentials would replace the
    Bearer token's Authorization header.
    """
    session.proxies.update(requests.utils.get_environ_proxies(base_url))
    bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
    if bundle:
        session.verify = bundle
    session.trust_env = False


def page_results(page: Any) -> list[dict]:
    """Return the customers of a list page, or raise if the page holds none we can read."""
    if isinstance(page, list):
        return page
    if isinstance(page, dict) and isinstance(page.get("results"), list):
        return page["results"]
    raise PiriodError(f"GET {CUSTOMERS_PATH} answered JSON without a `results` list; "
                      f"is api_url a Piriod API? ({_short(page)})")


def _numbered_pages(first: Any, query: dict[str, Any]) -> list[dict[str, Any]]:
    """Return the queries of pages 2..N if ``first`` shows page-number pagination, else []."""
    if not isinstance(first, dict) or not isinstance(first.get("count"), int):
        return []
    size, count = len(first["results"]), first["count"]
    if "next" in first:
        next_query = dict(parse_qsl(urlsplit(first["next"] or "").query))
        if next_query.get("page") != "2":  # no next, or offsets or cursors: follow links
            return []
    if not size or count <= size:
        return []
    return [{**query, "page": number} for number in range(2, -(-count // size) + 1)]


def _next_query(page: Any, query: dict[str, Any], read: int) -> dict[str, Any] | None:
    """Return the query of the page after ``page``, or None if it was the last."""
    following = following_page(page, read, int(query.get("page", 1)))
    if isinstance(following, int):
        return {**query, "page": following}
    return dict(parse_qsl(urlsplit(following).query)) if following else None


def _retry_after(value: str | None) -> float:
    """Parse Retry-After (seconds or an HTTP date); default 1 s; capped."""
    if not value:
        return 1.0
    try:
        seconds = float(value)
    except ValueError:
        try:
            moment = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return 1.0
        seconds = moment.timestamp() - time.time()
    return min(max(seconds, 0.0), RETRY_AFTER_CAP_SECONDS)


def _never_connected(error: Exception) -> bool:
    """Return True if the connection was refused or never established (nothing was sent)."""
    text = repr(error)
    return "NewConnectionError" in text or "Connection refused" in text


def _reason(error: Exception) -> str:
    inner = error.args[0] if error.args else error
    return type(getattr(inner, "reason", inner)).__name__


def _body(reply: Reply) -> Any:
    """Return an error body as JSON if it parses, else its first 500 characters."""
    try:
        return json.loads(reply.data)
    except ValueError:
        return reply.data.decode("utf-8", errors="replace")[:500]


def _short(body: Any) -> str:
    text = body if isinstance(body, str) else repr(body)
    return text if len(text) <= 300 else text[:300] + "..."


def _path(path: str) -> str:
    """Return a path for messages (kept short and free of query strings)."""
    return path.split("?", 1)[0]
