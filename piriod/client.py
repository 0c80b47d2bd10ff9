"""The HTTP client both connectors send through: auth, pooling, retries, pacing, pages.

One ``PiriodClient`` serves a whole run: one ``requests.Session`` whose connection pool is
at least as large as the number of threads (keep-alive connections are reused, not
re-opened), one ``Throttle`` that every thread consults before sending (a 429 slows the
whole run down instead of each thread hammering the API and sleeping alone), and counters
of requests and retries for progress lines and summaries.

Retries follow ``piriod.retry``, gated by whether repeating a request is safe. GET and
PATCH are idempotent, so they are retried on 5xx, timeouts, dropped connections and
unreadable bodies. A POST whose outcome is unknown (the server may have committed it) is
*not* retried here: ``OutcomeUnknownError`` goes back to the caller, which must look the
customer up before posting again.

Redirects: a GET follows a redirect on the API's own origin (a moved path); a write is
never redirected, except that a 303 after a POST is answered by a GET of the created
customer on the same origin (never a second POST). Any other redirect is a
``RedirectError`` naming the status and ``Location``: the token never leaves the host.
"""

from __future__ import annotations

import decimal
import json
import logging
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urljoin, urlsplit

import requests
from requests.adapters import HTTPAdapter

from piriod.errors import (
    ApiError,
    AuthError,
    OutcomeUnknownError,
    PaginationError,
    ParametersRefusedError,
    PiriodError,
    RedirectError,
    RetriesExhaustedError,
    StoppedError,
    excerpt,
    parameters_named,
    redact,
    retries_exhausted,
)
from piriod.listing import Listing
from piriod.pages import Page, read_pages
from piriod.retry import THROTTLED_ATTEMPTS_FACTOR, Throttle, backoff_seconds, retry_after_seconds
from piriod.settings import clean_token, is_loopback
from piriod.transport import Reply, Transport

CUSTOMERS_PATH = "/customers/"
PAGE_SIZE = 100
MAX_REDIRECTS = 5
MAX_ID_LENGTH = 200  # Piriod's ids are a dozen characters; a longer one is no customer's
_REDIRECTS = {301, 302, 303, 307, 308}


class InvalidIdError(PiriodError, ValueError):
    """An id that cannot be one path segment of ``/<resource>/{id}/``."""


@dataclass
class Answer:
    """A successful answer: its JSON, headers and how long the exchange took."""

    payload: Any
    headers: Any
    elapsed: float


class PiriodClient:
    """A thread-safe client for the Piriod API with pooled keep-alive connections.

    Reading takes the resource's path (``/customers/`` unless told otherwise): listing,
    counting and fetching one by id work the same for every Piriod resource. Writing is
    customers-only (the target's).
    """

    def __init__(self, api_url: str, token: str, *, timeout: float = 30.0,
                 max_retries: int = 5, user_agent: str = "piriod-singer",
                 pool_size: int = 4, decimals: bool = False,
                 logger: logging.Logger | None = None) -> None:
        self.base_url = api_url.rstrip("/") + "/"
        self.timeout = float(timeout)
        self.max_retries = max(0, int(max_retries))
        self.pool_size = max(1, int(pool_size))
        self.throttle = Throttle()
        self.logger = logger or logging.getLogger("piriod")
        token = clean_token(token)  # a pasted newline would put the token in an error
        self._token = token
        self._origin = _origin(self.base_url)
        self._parse_float = decimal.Decimal if decimals else float
        self.session = _session(self.base_url, token, user_agent, self.pool_size)
        self.transport = Transport(self.session, self.base_url, self.timeout)
        self._counter_lock = threading.Lock()
        self._stopping = threading.Event()
        self.requests_sent = 0
        self.retries = 0

    # -- the API -------------------------------------------------------------------------

    def list_pages(self, params: dict[str, Any] | None = None, *,
                   max_workers: int | None = None,
                   path: str = CUSTOMERS_PATH) -> Iterator[Page]:
        """Yield the pages of the list at ``path`` in order (rules: ``piriod.pages``)."""
        query = {"page_size": PAGE_SIZE, **(params or {})}
        workers = self.pool_size if max_workers is None else max_workers

        def fetch(query: dict[str, Any], number: int) -> Page:
            return self._list_page(path, query, number)

        return read_pages(fetch, query, max_workers=workers, logger=self.logger)

    def listing(self, params: dict[str, Any] | None = None, *,
                max_workers: int | None = None, path: str = CUSTOMERS_PATH) -> Listing:
        """Return the list at ``path`` as a ``Listing``: read again while it moves.

        Iterate it for the pages (each record version once); then its ``settled`` says
        whether the last pass saw the list hold still (rules: ``piriod.listing``).
        """
        return Listing(lambda: self.list_pages(params, max_workers=max_workers, path=path),
                       lambda: self.count(params, path=path), logger=self.logger)

    def count(self, params: dict[str, Any] | None = None, *,
              path: str = CUSTOMERS_PATH) -> int | None:
        """Return the ``count`` of a (filtered) list now, from a one-record page."""
        pages = self.list_pages({**(params or {}), "page_size": 1}, max_workers=1, path=path)
        try:
            page = next(iter(pages))
        finally:
            pages.close()  # type: ignore[attr-defined]
        count = page.payload.get("count") if isinstance(page.payload, dict) else None
        return count if type(count) is int else None

    def iter_customers(self, params: dict[str, Any] | None = None) -> Iterator[dict]:
        """Yield every customer of a (possibly filtered) list."""
        for page in self.list_pages(params):
            yield from page.results

    def get_customer(self, customer_id: str) -> dict | None:
        """Return one customer, or None if the API does not know the id (404)."""
        return self.get_one(customer_id)

    def get_one(self, item_id: str, *, path: str = CUSTOMERS_PATH) -> dict | None:
        """Return one record of the list at ``path``, or None if the API does not know it.

        An id that cannot be a path segment (``..``, control characters) is no record's:
        None without a request, so that a caller rejects that record and goes on.
        """
        try:
            one = item_path(path, item_id)
        except InvalidIdError:
            return None
        try:
            return self._call("GET", one).payload
        except ApiError as error:
            if error.status == 404:
                return None
            raise

    def create_customer(self, payload: dict) -> dict:
        """POST a customer. Raises OutcomeUnknownError when it may have been committed."""
        return self._call("POST", CUSTOMERS_PATH, json_body=payload, idempotent=False).payload

    def update_customer(self, customer_id: str, changes: dict) -> dict:
        """PATCH the given attributes (idempotent: the same body twice is one change)."""
        return self._call("PATCH", customer_path(customer_id), json_body=changes).payload

    def check_access(self) -> int | None:
        """Read one customer page (a connection test); return the account's count if told."""
        return self.count()

    # -- run control ---------------------------------------------------------------------

    def stop(self) -> None:
        """Make waits and retries give up (a signal): requests in flight still finish."""
        self._stopping.set()

    def backoff(self, attempt: int) -> None:
        """Sleep the policy's backoff before retry number ``attempt`` (0-based)."""
        self._sleep(backoff_seconds(attempt), "retrying")

    def redact(self, text: str) -> str:
        """Return ``text`` with every spelling of the token blanked out."""
        return redact(text, self._token)

    def close(self) -> None:
        """Close pooled connections."""
        self.session.close()

    # -- the retry loop ------------------------------------------------------------------

    def _list_page(self, path: str, query: dict[str, Any], number: int) -> Page:
        try:
            answer = self._call("GET", path, params=query)
        except RetriesExhaustedError as error:  # say which page: the run stops on it
            raise RetriesExhaustedError(f"page {number} of the listing: {error}") from None
        page = Page(number, answer.payload, answer.headers, answer.elapsed)
        _check_ids(page)
        return page

    def _call(self, method: str, path: str, *, params: dict | None = None,
              json_body: dict | None = None, idempotent: bool = True) -> Answer:
        """Send one logical request, retrying what is safe to retry; return its answer."""
        failures = throttled = 0
        where = f"{method} {path}"
        while True:
            self._sleep(self.throttle.delay(), "waiting for the rate limit")
            started = time.monotonic()
            outcome = self._attempt(method, path, params, json_body)
            if isinstance(outcome, _Throttled):
                throttled += 1
                if throttled > (self.max_retries + 1) * THROTTLED_ATTEMPTS_FACTOR:
                    raise RetriesExhaustedError(f"{where} still throttled (429) after "
                                                f"{throttled} attempts")
                self.throttle.on_throttled(outcome.retry_after)
                self.logger.info("%s throttled (429): every request waits %.1f s", where,
                                 outcome.retry_after)
                continue
            if isinstance(outcome, Reply):
                self.throttle.on_success()
                answer = self._answer(outcome, time.monotonic() - started)
                if isinstance(answer, Answer):
                    return answer
                outcome = answer
            if not idempotent and not outcome.not_sent:
                raise OutcomeUnknownError(f"{where}: {outcome.reason}",
                                          timed_out=outcome.timed_out)
            failures += 1
            if failures > self.max_retries:
                raise retries_exhausted(where, failures, self.base_url, outcome.reason,
                                        loopback=is_loopback(self._origin[1]))
            self._count_retry()
            wait = backoff_seconds(failures - 1)
            self.logger.warning("Retry %d of %d in %.1f s after: %s failed (%s)", failures,
                                self.max_retries, wait, where, self.redact(outcome.reason))
            self._sleep(wait, "waiting to retry")

    def _attempt(self, method: str, path: str, params: dict | None,
                 json_body: dict | None) -> Reply | _Throttled | _Transient:
        """Send once (following same-origin GET redirects); classify what came back."""
        url = urljoin(self.base_url, path.lstrip("/"))
        for _ in range(MAX_REDIRECTS + 1):
            self._count_request()
            try:
                reply = self.transport.send(method, url, params, json_body)
            except requests.exceptions.RequestException as error:
                return _transient_for(error, self.timeout)
            if reply.status not in _REDIRECTS:
                return self._classify(method, path, params, reply)
            method, url, params, json_body = self._redirected(method, path, url, reply)
        raise RedirectError(method, path, 310, "(more than 5 redirects)")

    def _redirected(self, method: str, path: str, url: str,
                    reply: Reply) -> tuple[str, str, None, None]:
        """Return the request a redirect allows, or raise RedirectError."""
        location = urljoin(url, reply.headers.get("Location") or "")
        same_origin = _origin(location) == self._origin
        if same_origin and (method == "GET" or (method == "POST" and reply.status == 303)):
            return "GET", location, None, None  # the query, if any, is in the Location
        raise RedirectError(method, path, reply.status, location)

    def _classify(self, method: str, path: str, params: dict | None,
                  reply: Reply) -> Reply | _Throttled | _Transient:
        status = reply.status
        if status == 429:
            return _Throttled(retry_after_seconds(reply.headers.get("Retry-After")))
        if status >= 500:
            return _Transient(f"HTTP {status} {excerpt(self._body(reply))}")
        if status >= 400:
            raise self._refusal(method, path, params, status, self._body(reply))
        if status < 200 or status >= 300:
            return _Transient(f"HTTP {status}, not a success")
        return reply

    def _refusal(self, method: str, path: str, params: dict | None, status: int,
                 body: Any) -> ApiError:
        """Return the typed error of a 4xx (its body already redacted by ``_body``)."""
        if status in (401, 403):
            return AuthError(method, path, status, body, api_url=self.base_url)
        refused = parameters_named(body, [name for name in params or {} if name != "page"])
        if status == 400 and refused:
            return ParametersRefusedError(method, path, status, body, refused)
        return ApiError(method, path, status, body, api_url=self.base_url)

    def _answer(self, reply: Reply, elapsed: float) -> Answer | _Transient:
        """Parse a 2xx body; an unreadable one (broken JSON, NaN, bad UTF-8) is transient."""
        try:
            payload = json.loads(reply.data, parse_float=self._parse_float,
                                 parse_constant=_refuse_constant)
        except ValueError as error:
            return _Transient(f"HTTP {reply.status} with a body that is not JSON "
                              f"({excerpt(str(error), 80)})")
        return Answer(payload, reply.headers, elapsed)

    def _body(self, reply: Reply) -> Any:
        """Return an error body as JSON if it parses, else its start as text; redacted.

        Servers echo headers: the token is blanked out before the body is cut or quoted
        anywhere (a message, a log line, a dead letter).
        """
        try:
            body = json.loads(reply.data)
        except ValueError:
            # Cut past the longest spelling of a token starting before 2000: none is halved.
            head = reply.data[:2000 + 6 * len(self._token)]
            return self.redact(head.decode("utf-8", errors="replace"))[:2000]
        return json.loads(self.redact(json.dumps(body, default=str)))

    def _sleep(self, seconds: float, why: str) -> None:
        """Sleep, unless the run is stopping (then raise at once)."""
        if (seconds > 0 and self._stopping.wait(seconds)) or self._stopping.is_set():
            raise StoppedError(f"stopped by a signal while {why}")

    def _count_request(self) -> None:
        with self._counter_lock:
            self.requests_sent += 1

    def _count_retry(self) -> None:
        with self._counter_lock:
            self.retries += 1


def customer_path(customer_id: str) -> str:
    """Return ``/customers/{id}/`` with the id quoted as one path segment."""
    return item_path(CUSTOMERS_PATH, customer_id)


def item_path(path: str, item_id: str) -> str:
    """Return ``{path}{id}/`` (``path`` a list's, e.g. ``/customers/``), the id quoted.

    A record id such as ``../invoices/inv1`` must not make an authenticated request
    leave ``path``.
    """
    text = str(item_id)
    noun = "customer" if path == CUSTOMERS_PATH else f"{path.strip('/')} record"
    refused = InvalidIdError(f"{excerpt(text, 60)!r} cannot be a Piriod {noun} id")
    if not text.strip() or text in (".", "..") or len(text) > MAX_ID_LENGTH or \
            any(ord(char) < 0x20 for char in text):
        raise refused
    try:
        return f"{path}{quote(text, safe='')}/"
    except UnicodeEncodeError:  # lone surrogates: bytes of the input that were not UTF-8
        raise refused from None


def _check_ids(page: Page) -> None:
    """Refuse a list page holding a customer without an id (an index would miss it).

    A loader indexing the account would then create that customer again; a tap would
    emit a record that cannot be keyed. The error names the page, not the customer's data.
    """
    for position, customer in enumerate(page.results, 1):
        if not isinstance(customer, dict) or customer.get("id") in (None, ""):
            raise PaginationError(
                f"page {page.number} of the listing held a customer without an id (number "
                f"{position} on the page): the API answered outside its contract; stopping "
                "rather than reading customers that cannot be matched")


@dataclass
class _Throttled:
    retry_after: float


@dataclass
class _Transient:
    reason: str
    not_sent: bool = False
    timed_out: bool = False


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _transient_for(error: requests.exceptions.RequestException,
                   timeout: float) -> _Transient:
    """Describe a failed send: whether anything was sent, and whether it timed out."""
    if isinstance(error, requests.exceptions.ConnectTimeout):
        return _Transient(f"connect timeout ({type(error).__name__})", not_sent=True)
    if isinstance(error, requests.exceptions.Timeout):
        return _Transient(f"timeout after {timeout:g} s ({type(error).__name__})",
                          timed_out=True)
    if isinstance(error, requests.exceptions.ConnectionError):
        inner = error.args[0] if error.args else error
        reason = type(getattr(inner, "reason", inner)).__name__
        text = repr(error)
        refused = "NewConnectionError" in text or "Connection refused" in text
        return _Transient(f"connection error ({reason})", not_sent=refused)
    return _Transient(f"request failed ({type(error).__name__})")


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    port = parts.port or {"http": 80, "https": 443}.get(parts.scheme)
    return parts.scheme, (parts.hostname or "").lower(), port


def _session(base_url: str, token: str, user_agent: str, pool_size: int) -> requests.Session:
    session = requests.Session()
    adapter = HTTPAdapter(pool_connections=2, pool_maxsize=pool_size + 2, max_retries=0,
                          pool_block=True)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.headers.update({"Authorization": f"Bearer {token}", "User-Agent": user_agent,
                            "Accept": "application/json"})
    _settle_environment(session, base_url)
    return session


def _settle_environment(session: requests.Session, base_url: str) -> None:
    """Read the proxy and CA-bundle variables once, then stop requests re-reading them.

    With ``trust_env`` on, requests looks up the proxy variables (and ``~/.netrc``) again
    for every request, under the GIL the threads share; every request of a run goes to
    one host, so the answer is the same each time. ``~/.netrc`` is deliberately not read:
    its credentials would replace the Bearer token's Authorization header.
    """
    session.proxies.update(requests.utils.get_environ_proxies(base_url))
    bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
    if bundle:
        session.verify = bundle
    session.trust_env = False
