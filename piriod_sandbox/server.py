"""The sandbox's HTTP server: Piriod's customer endpoints plus a ``/_sandbox/`` control API.

Built on the standard library's threading HTTP server, speaking HTTP/1.1 with keep-alive,
because that gives exact control over the faults we inject (a connection can be dropped
before or after a write is committed) and starts in a fraction of a second.

Control routes (JSON in, JSON out; 400 with a ``detail`` for a bad request):

- ``GET health``; ``POST reset`` {seed, rng_seed}; ``GET``/``PUT faults`` (a whole plan,
  see faults.FaultPlan); ``PATCH faults`` (merge keys into the plan, counters restart);
  ``GET stats``, ``POST stats/reset``; ``GET customers`` (all, creation order).
- ``POST touch`` {ids | count, rng_seed, updated, changes}: edit in place, any stamp.
- ``POST delete`` {ids}: the customers vanish from lists and retrieve (404); all or none.
- ``POST insert`` {customer, created, updated, id}: a late commit, a validated row with
  stamps in the past; answers the customer.
- ``POST stamp`` {ids | first + ordering | neither: all, updated, changes}: one ``updated``
  instant for many rows in one transaction; answers {ids}.
- ``POST tie_storm`` {count, updated, created, rng_seed}: append count customers sharing
  one ``updated`` in one transaction; answers {ids, updated}.
- ``PUT churn`` {at, every, times, deletes, inserts, within, rng_seed}: deletes and late
  inserts applied exactly before given list requests (see churn.ChurnPlan; ``{}``
  clears it); ``GET churn``: the plan and what it did. ``POST reset`` clears it too.

Stamps are ISO 8601 (``Z`` or an offset; naive means UTC); omitted ones mean now.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlencode, urlsplit

from piriod_sandbox.churn import Churner, ChurnPlan
from piriod_sandbox.data import COUNTRIES
from piriod_sandbox.faults import STATUS_FAULTS, FaultInjector, FaultPlan
from piriod_sandbox.store import (
    ORDERING_FIELDS,
    CustomerStore,
    NotFound,
    ValidationError,
    parse_time,
    render_time,
)

LOGGER = logging.getLogger("piriod_sandbox")
DEFAULT_TOKEN = "sandbox-token"  # noqa: S105 - a published, local-only development token
DEFAULT_PAGE_SIZE = 25
MAX_PAGE_SIZE = 100
_TIME_FILTERS = {"gte": ">=", "gt": ">", "lte": "<=", "lt": "<"}
_HTML_ERROR = b"<!DOCTYPE html><html><head><title>%d</title></head><body><h1>%d Server Error</h1><p>upstream said no</p></body></html>"  # noqa: E501


class Stats:
    """Counts what clients asked for and what the store committed, for tests and benchmarks."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        """Zero every counter."""
        with self._lock:
            self.counts: dict[str, int] = {"requests": 0, "creates": 0, "updates": 0}
            self.by_method: dict[str, int] = {}
            self.by_status: dict[str, int] = {}
            self.busy_seconds = 0.0

    def add(self, key: str, bucket: dict[str, int] | None = None) -> None:
        """Increment one counter (in ``bucket`` if given)."""
        with self._lock:
            target = self.counts if bucket is None else bucket
            target[key] = target.get(key, 0) + 1

    def add_busy(self, seconds: float) -> None:
        """Add server time spent answering API requests (excludes injected latency)."""
        with self._lock:
            self.busy_seconds += seconds

    def snapshot(self) -> dict:
        """Return every counter as JSON-ready data."""
        with self._lock:
            return {**self.counts, "writes": self.counts["creates"] + self.counts["updates"],
                    "by_method": dict(self.by_method), "by_status": dict(self.by_status),
                    "busy_seconds": round(self.busy_seconds, 4)}


class SandboxServer(ThreadingHTTPServer):
    """An HTTP server holding the store, the fault injector and the counters."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], store: CustomerStore, token: str,
                 plan: FaultPlan | None = None, verbose: bool = False) -> None:
        super().__init__(address, SandboxHandler)
        self.store, self.token, self.verbose = store, token, verbose
        self.faults = FaultInjector()
        self.configure_faults(plan or FaultPlan())
        self.stats = Stats()
        self.churner = Churner()

    def configure_faults(self, plan: FaultPlan) -> None:
        """Apply a fault plan, including a skewed server clock."""
        self.faults.configure(plan)
        self.store.clock_offset_us = int(plan.clock_offset_s * 1_000_000)

    @property
    def url(self) -> str:
        """Return the base URL clients use."""
        host, port = self.socket.getsockname()[:2]  # an AF_INET socket: (str, int)
        return f"http://{host}:{port}"


class SandboxHandler(BaseHTTPRequestHandler):
    """One request: either the Piriod API (with faults) or the control API."""

    protocol_version = "HTTP/1.1"
    server: SandboxServer
    server_version = "piriod-sandbox/0.1"
    # TCP_NODELAY, as production servers set it: a response goes out as headers, then
    # body; with Nagle's algorithm the small body waits for the client's delayed ACK of
    # the headers, ~40 ms, which made every small response (POST, PATCH) take 40 ms more.
    disable_nagle_algorithm = True

    def do_GET(self) -> None:
        """Serve GET."""
        self._dispatch("GET")

    def do_POST(self) -> None:
        """Serve POST."""
        self._dispatch("POST")

    def do_PATCH(self) -> None:
        """Serve PATCH."""
        self._dispatch("PATCH")

    def do_PUT(self) -> None:
        """Serve PUT (the control API only; the Piriod API answers 405)."""
        self._dispatch("PUT")

    def do_DELETE(self) -> None:
        """Answer DELETE (not part of the documented API: 405)."""
        self._dispatch("DELETE")

    def date_time_string(self, timestamp: float | None = None) -> str:
        """Stamp the Date header with the server's (possibly skewed) clock."""
        skew = self.server.faults.plan.clock_offset_s
        return super().date_time_string((timestamp or time.time()) + skew)

    def log_message(self, format: str, *args: object) -> None:
        """Log requests only when the server runs verbose."""
        if self.server.verbose:
            LOGGER.info("%s %s", self.address_string(), format % args)

    # -- plumbing ------------------------------------------------------------------------

    def _dispatch(self, method: str) -> None:
        url = urlsplit(self.path)
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if url.path.startswith("/_sandbox/"):
            self._send(*self._control(method, url.path, body))
            return
        self._api_with_faults(method, url.path, url.query, body)

    def _api_with_faults(self, method: str, path: str, query: str, body: bytes) -> None:
        stats, plan = self.server.stats, self.server.faults.plan
        stats.add("requests")
        stats.add(method, stats.by_method)
        fault = self.server.faults.pick(method, path, query)
        if plan.latency_ms:
            time.sleep(plan.latency_ms / 1000)
        if fault in STATUS_FAULTS:
            self._send_fault(STATUS_FAULTS[fault], html=fault.endswith("_html"))
            return
        if fault == "drop":
            self._drop()
            return
        if fault == "slow":
            time.sleep(plan.slow_ms / 1000)
        started = time.perf_counter()
        status, payload = self._api(method, path, query, body)
        stats.add_busy(time.perf_counter() - started)
        if fault == "drop_after":
            self._drop()
            return
        if fault == "malformed":
            payload = payload[: max(1, len(payload) // 2)]
        stats.add(str(status), stats.by_status)
        self._send(status, payload)

    def _send(self, status: int, payload: bytes, content_type: str = "application/json",
              headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)

    def _send_fault(self, status: int, html: bool) -> None:
        self.server.stats.add(str(status), self.server.stats.by_status)
        headers = {}
        if status == 429:
            headers["Retry-After"] = str(self.server.faults.plan.retry_after)
            payload = _json({"detail": "Request was throttled. Expected available in "
                                       f"{self.server.faults.plan.retry_after} seconds."})
        elif html:
            payload = _HTML_ERROR % (status, status)
        else:
            payload = _json({"detail": "A server error occurred."})
        self._send(status, payload, "text/html" if html else "application/json", headers)

    def _drop(self) -> None:
        """Close the connection without a response, as a crashed proxy would."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    # -- the Piriod API ------------------------------------------------------------------

    def _api(self, method: str, path: str, query: str, body: bytes) -> tuple[int, bytes]:
        if not self._authorized():
            return 401, _json({"detail": self._auth_problem()})
        parts = [part for part in path.split("/") if part]
        if not parts or parts[0] != "customers" or len(parts) > 2:
            return 404, _json({"detail": "Not found."})
        allowed = ("GET", "POST") if len(parts) == 1 else ("GET", "PATCH")
        if method not in allowed:
            return 405, _json({"detail": f'Method "{method}" not allowed.'})
        try:
            if len(parts) == 1 and method == "GET":
                return 200, self._list(path, query)
            if len(parts) == 1:
                customer = self.server.store.create(_parse_body(body))
                self.server.stats.add("creates")
                return 201, _json(customer)
            if method == "GET":
                mixed = self.server.faults.plan.mixed_offsets
                return 200, _json(self.server.store.get(parts[1], mixed_offsets=mixed))
            customer = self.server.store.update(parts[1], _parse_body(body))
            self.server.stats.add("updates")
            return 200, _json(customer)
        except ValidationError as error:
            return 400, _json(error.errors)
        except NotFound:
            return 404, _json({"detail": "Not found."})
        except _InvalidPage:
            return 404, _json({"detail": "Invalid page."})

    def _authorized(self) -> bool:
        return self.headers.get("Authorization", "") == f"Bearer {self.server.token}"

    def _auth_problem(self) -> str:
        if not self.headers.get("Authorization"):
            return "Authentication credentials were not provided."
        return "Invalid token."

    def _list(self, path: str, query: str) -> bytes:
        self.server.churner.before_list_request(self.server.store)
        params = dict(parse_qsl(query, keep_blank_values=True))
        page = _positive_int(params.get("page"), 1, strict=True)
        size = min(_positive_int(params.get("page_size"), DEFAULT_PAGE_SIZE), MAX_PAGE_SIZE)
        plan = self.server.faults.plan
        refused = sorted(set(params) & set(plan.reject_params))
        if refused:
            raise ValidationError({name: ["Unknown query parameter."] for name in refused})
        where = _filters(params, honour_all=not plan.ignore_params)
        order_by = "shuffle" if plan.ignore_params else _order_by(params.get("ordering"))
        offset = (page - 1) * size
        total, docs = self.server.store.page(where, order_by, offset, size, plan.mixed_offsets)
        if page > 1 and offset >= total:
            raise _InvalidPage
        if plan.no_links:
            return b'{"count": %d, "results": [%s]}' % (total, ", ".join(docs).encode())
        base = f"http://{self.headers.get('Host', 'localhost')}{path}"
        next_url = _page_url(base, params, page + 1) if offset + size < total else None
        previous_url = _page_url(base, params, page - 1) if page > 1 else None
        return (
            b'{"count": %d, "next": %s, "previous": %s, "results": [%s]}'
            % (total, _json(next_url), _json(previous_url), ", ".join(docs).encode())
        )

    # -- the control API (tests, demo, benchmarks) ---------------------------------------

    def _control(self, method: str, path: str, body: bytes) -> tuple[int, bytes]:
        server, route = self.server, (method, path.rstrip("/"))
        try:
            data = json.loads(body) if body else {}
            if route == ("GET", "/_sandbox/health"):
                return 200, _json({"ok": True, "customers": server.store.count()})
            if route == ("POST", "/_sandbox/reset"):
                server.store.reset(int(data.get("seed", 0)), int(data.get("rng_seed", 7)))
                server.stats.reset()
                server.churner.configure(ChurnPlan())
                return 200, _json({"customers": server.store.count()})
            if route == ("PUT", "/_sandbox/faults"):
                server.configure_faults(FaultPlan.from_dict(data))
                return 200, _json(server.faults.plan.to_dict())
            if route == ("GET", "/_sandbox/faults"):
                return 200, _json({**server.faults.plan.to_dict(),
                                   "injected": server.faults.injected})
            if route == ("GET", "/_sandbox/stats"):
                return 200, _json(server.stats.snapshot())
            if route == ("POST", "/_sandbox/stats/reset"):
                server.stats.reset()
                return 200, _json(server.stats.snapshot())
            if route == ("GET", "/_sandbox/customers"):
                return 200, _json(server.store.all_customers())
            if route == ("POST", "/_sandbox/touch"):
                return 200, _json(self._touch(data))
            return self._control_more(route, data)
        except (ValueError, TypeError, KeyError, AttributeError, NotFound,
                ValidationError) as error:
            return 400, _json({"detail": f"{type(error).__name__}: {error}"})

    def _control_more(self, route: tuple[str, str], data: dict) -> tuple[int, bytes]:
        """Serve the back doors later tests needed (deletes, late commits, bulk stamps)."""
        server, store = self.server, self.server.store
        if route == ("PATCH", "/_sandbox/faults"):
            merged = {**server.faults.plan.to_dict(), **data}
            server.configure_faults(FaultPlan.from_dict(merged))
            return 200, _json(server.faults.plan.to_dict())
        if route == ("PUT", "/_sandbox/churn"):
            server.churner.configure(ChurnPlan.from_dict(data))
            return 200, _json(server.churner.report())
        if route == ("GET", "/_sandbox/churn"):
            return 200, _json(server.churner.report())
        if route == ("POST", "/_sandbox/delete"):
            return 200, _json({"ids": store.delete(_id_list(data["ids"]))})
        if route == ("POST", "/_sandbox/insert"):
            customer = store.insert(data.get("customer", {}), _stamp_us(data.get("created")),
                                    _stamp_us(data.get("updated")), data.get("id"))
            return 200, _json(customer)
        if route == ("POST", "/_sandbox/stamp"):
            return 200, _json({"ids": self._bulk_stamp(data)})
        if route == ("POST", "/_sandbox/tie_storm"):
            updated = _stamp_us(data.get("updated"))
            updated = store.now_us() if updated is None else updated
            ids = store.tie_storm(int(data["count"]), updated, _stamp_us(data.get("created")),
                                  data.get("rng_seed"))
            return 200, _json({"ids": ids, "updated": render_time(updated)})
        method, path = route
        return 404, _json({"detail": f"no control route {method} {path}"})

    def _bulk_stamp(self, data: dict) -> list[str]:
        ids = data.get("ids")
        first = data.get("first")
        order_by = _order_by(data["ordering"]) if data.get("ordering") else "seq ASC"
        return self.server.store.stamp(
            _id_list(ids) if ids is not None else None,
            int(first) if first is not None else None, order_by,
            _stamp_us(data.get("updated")), data.get("changes") or {})

    def _touch(self, data: dict) -> dict:
        store = self.server.store
        ids = data.get("ids") or store.random_ids(int(data.get("count", 0)), data.get("rng_seed"))
        updated = parse_time(data["updated"]) if data.get("updated") else None
        return {"ids": store.touch(ids, updated, data.get("changes") or {})}


class _InvalidPage(Exception):
    pass


def _stamp_us(text: str | None) -> int | None:
    """Parse an optional control-API stamp (ISO 8601) into microseconds."""
    return parse_time(text) if text else None


def _id_list(ids: object) -> list[str]:
    """Refuse a bare string where a list of ids belongs (it would iterate as characters)."""
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise TypeError("ids must be a list of strings")
    return ids


def _json(value: object) -> bytes:
    return json.dumps(value, ensure_ascii=False).encode()


def _parse_body(body: bytes) -> object:
    try:
        return json.loads(body or b"{}")
    except ValueError as error:
        raise ValidationError({"detail": [f"JSON parse error - {error}"]}) from error


def _positive_int(text: str | None, default: int, strict: bool = False) -> int:
    """Parse a positive integer query parameter; DRF 404s a bad page, defaults a bad size."""
    try:
        value = int(text) if text not in (None, "") else default
    except ValueError:
        value = 0
    if value < 1:
        if strict:
            raise _InvalidPage
        return default
    return value


def _filters(params: dict[str, str], honour_all: bool) -> list[tuple[str, object]]:
    """Translate DRF-style filter parameters into SQL conditions."""
    where: list[tuple[str, object]] = []
    if "country__name" in params:
        wanted = params["country__name"].strip().lower()
        codes = [code for code, name in COUNTRIES.items() if name.lower() == wanted]
        where.append(("country = ?", codes[0] if codes else "--"))
    if not honour_all:
        return where
    for column in ("updated", "created"):
        for suffix, operator in _TIME_FILTERS.items():
            value = params.get(f"{column}__{suffix}")
            if value:
                try:
                    where.append((f"{column}_us {operator} ?", parse_time(value)))
                except ValueError as error:
                    raise ValidationError(
                        {f"{column}__{suffix}": ["Enter a valid date/time."]}) from error
    for column in ("tax_id", "email"):
        if column in params:
            where.append((f"{column} = ?", params[column]))
    return where


def _order_by(ordering: str | None) -> str:
    """Translate ``ordering`` (comma-separated, ``-`` for descending; unknown fields ignored)."""
    terms = []
    for raw in (ordering or "-created").split(","):
        name = raw.strip().lstrip("-")
        if name in ORDERING_FIELDS:
            direction = "DESC" if raw.strip().startswith("-") else "ASC"
            terms.append(f"{ORDERING_FIELDS[name]} {direction}")
    return ", ".join([*terms, "seq ASC"])


def _page_url(base: str, params: dict[str, str], page: int) -> str:
    query = {key: value for key, value in params.items() if key != "page"}
    if page > 1:
        query["page"] = str(page)
    return f"{base}?{urlencode(query)}" if query else base
