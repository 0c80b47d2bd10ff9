"""A small misbehaving HTTP server, in its own process, for tests of the tap and target.

Where piriod_sandbox behaves like the documented API, this server behaves like a broken
or malicious one, one scenario per process, deterministically: pagination that loops or
lies, throttling with absurd ``Retry-After`` values, bodies that echo the token, redirects
of writes, links to another host, bodies that are not JSON. It uses the standard library
only and imports nothing from this repository, so it cannot share the client's assumptions.

Run it::

    python tests/hostile_server.py --scenario cycle --port 0 [--options '{"k": 1}']
    python -m tests.hostile_server --scenario retry_after --option retry_after=inf

The first stdout line is ``hostile-server listening on http://127.0.0.1:PORT scenario
NAME``. Every request outside ``/_hostile/`` is logged: ``GET /_hostile/requests`` returns
the log as JSON, ``DELETE /_hostile/requests`` clears it, ``GET /_hostile/health`` names the
scenario and its options. SIGTERM or SIGINT stops the server. From Python (tests)::

    with HostileServer("redirect_post", status=307) as server:
        ...  # point the client at server.url
        posts = server.received("POST")

Scenarios (options and their defaults in SCENARIOS, listed by ``--list``) answer
``GET /customers/`` with DRF-shaped pages ``{"count", "next", "previous", "results"}`` of
valid customers, two a page; any route a scenario does not claim gets the well-behaved
default (``plain``): a 3-page list of 6 customers, ``GET``/``PATCH /customers/{id}/``, and
``POST /customers/`` answering 201.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType, TracebackType
from urllib.error import HTTPError
from urllib.parse import parse_qs, urlencode, urlsplit
from urllib.request import Request as UrlRequest
from urllib.request import urlopen

PAGE_SIZE = 2
PLAIN_PAGES = 3
EPOCH = datetime(2024, 1, 1, tzinfo=timezone.utc)
NOT_FOUND = {"detail": "Not found."}
INVALID_PAGE = {"detail": "Invalid page."}


# -- requests, replies and the customers served ------------------------------------------


@dataclass
class Request:
    """One request as a scenario sees it."""

    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes

    @property
    def params(self) -> dict[str, str]:
        """Return the query parameters (the last value of a repeated one, as DRF reads)."""
        return {key: values[-1] for key, values in parse_qs(self.query).items()}

    @property
    def page(self) -> int:
        """Return the requested page number (1 when absent or not a number)."""
        try:
            return int(self.params.get("page", "1"))
        except ValueError:
            return 1

    def json(self) -> object:
        """Return the body parsed as JSON, or None."""
        try:
            return json.loads(self.body or b"null")
        except ValueError:
            return None


@dataclass
class Reply:
    """What to answer: a status, raw body bytes and headers."""

    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/json"


def json_reply(status: int, value: object, headers: dict[str, str] | None = None) -> Reply:
    """Answer JSON (NaN and Infinity allowed: some scenarios need them)."""
    return Reply(status, json.dumps(value, ensure_ascii=False).encode(), headers or {})


def customer(number: int, **fields: object) -> dict:
    """Return customer ``number`` in the API's read shape: the same every time."""
    created = EPOCH + timedelta(hours=number)
    return {
        "id": f"hostile{number:05d}",
        "name": f"Cliente Hostil {number} SpA",
        "email": f"cliente{number}@hostil.example",
        "address": f"Calle Hostil {number}",
        "country": {"id": "CL", "name": "Chile"},
        "state": None,
        "currency": "CLP",
        "phone": None,
        "tax_id": f"77.000.{number % 1000:03d}-{number % 10}",
        "tax_settings": None,
        "website": None,
        "metadata": {},
        "aggregations": {"balance": 0, "sales": 0, "sales_current_period": 0},
        "contacts": [],
        "sources": [],
        "created": _iso(created),
        "updated": _iso(created + timedelta(minutes=30)),
        **fields,
    }


def customers_of_page(page: int, size: int = PAGE_SIZE) -> list[dict]:
    """Return the customers numbered for ``page``: 1-2 on page 1, 3-4 on page 2, ..."""
    return [customer(number) for number in range((page - 1) * size + 1, page * size + 1)]


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


# -- the server's state and links --------------------------------------------------------


class Hostile:
    """A running scenario: its base URL, options, counters and the request log."""

    def __init__(self, scenario: str, options: dict, base: str) -> None:
        self.scenario, self.options, self.base = scenario, options, base
        self._lock = threading.Lock()
        self._counters: dict[str, int] = {}
        self.log: list[dict] = []

    def count(self, key: str) -> int:
        """Increment a counter and return its new value (the nth such request)."""
        with self._lock:
            self._counters[key] = self._counters.get(key, 0) + 1
            return self._counters[key]

    def record(self, request: Request, reply: Reply) -> None:
        """Log a request and the status it got."""
        authorization = _header(request.headers, "Authorization")
        entry = {
            "method": request.method, "path": request.path, "query": request.query,
            "params": parse_qs(request.query), "host": _header(request.headers, "Host"),
            "headers": request.headers, "authorization": authorization,
            "has_authorization": authorization is not None,
            "body": request.body.decode("utf-8", "replace"), "status": reply.status,
        }
        with self._lock:
            self.log.append(entry)

    def link(self, request: Request, page: int, path: str | None = None,
             base: str | None = None) -> str:
        """Return a DRF-style link to ``page``: the request's other parameters kept."""
        query = {key: value for key, value in request.params.items() if key != "page"}
        if page > 1:
            query["page"] = str(page)
        url = f"{base or self.base}{path or request.path}"
        return f"{url}?{urlencode(query)}" if query else url


def _header(headers: dict[str, str], name: str) -> str | None:
    return next((v for k, v in headers.items() if k.lower() == name.lower()), None)


def page_reply(hostile: Hostile, request: Request, results: list[dict], count: int,
               next_page: int | None, **links: str | None) -> Reply:
    """Answer a DRF page; ``links`` may override ``next`` or ``previous`` with any URL."""
    page = request.page
    body = {
        "count": count,
        "next": hostile.link(request, next_page) if next_page else None,
        "previous": hostile.link(request, page - 1) if page > 1 else None,
        "results": results,
    }
    body.update(links)
    return json_reply(200, body)


def plain_list(hostile: Hostile, request: Request, pages: int = PLAIN_PAGES,
               path: str | None = None) -> Reply:
    """Answer the well-behaved list: ``pages`` pages of two; past the end, 404."""
    page = request.page
    if not 1 <= page <= pages:
        return json_reply(404, INVALID_PAGE)
    next_url = hostile.link(request, page + 1, path) if page < pages else None
    previous = hostile.link(request, page - 1, path) if page > 1 else None
    return json_reply(200, {"count": pages * PAGE_SIZE, "next": next_url,
                            "previous": previous, "results": customers_of_page(page)})


def plain(hostile: Hostile, request: Request, path: str | None = None) -> Reply:
    """Answer as a well-behaved API would (every scenario's fallback).

    ``path`` replaces the request's path for routing (prefix_links strips its prefix).
    """
    parts = [part for part in (path or request.path).split("/") if part]
    if parts == ["customers"] and request.method == "GET":
        return plain_list(hostile, request, path=path)
    if parts == ["customers"] and request.method == "POST":
        number = 90_000 + hostile.count("created")
        return json_reply(201, customer(number, **_written(request)))
    if len(parts) == 2 and parts[0] == "customers" and request.method in ("GET", "PATCH"):
        fields = _written(request) if request.method == "PATCH" else {}
        return json_reply(200, customer(_number(parts[1]), id=parts[1], **fields))
    if parts and parts[0] == "customers":
        return json_reply(405, {"detail": f'Method "{request.method}" not allowed.'})
    return json_reply(404, NOT_FOUND)


def _written(request: Request) -> dict:
    """Return a write body's fields in read shape (a country code becomes an object)."""
    body = request.json()
    fields = dict(body) if isinstance(body, dict) else {}
    if isinstance(fields.get("country"), str):
        fields["country"] = {"id": fields["country"], "name": fields["country"]}
    return {key: value for key, value in fields.items()
            if key not in ("id", "created", "updated")}


def _number(customer_id: str) -> int:
    digits = "".join(ch for ch in customer_id if ch.isdigit())
    return int(digits[-5:]) if digits else 1


# -- scenarios ----------------------------------------------------------------------------

Handler = Callable[[Hostile, Request], "Reply | None"]  # None: the plain answer
SCENARIOS: dict[str, tuple[dict, Handler]] = {}


def scenario(name: str, **defaults: object) -> Callable[[Handler], Handler]:
    """Register a scenario with its options' defaults (unknown options are refused)."""
    def register(handler: Handler) -> Handler:
        SCENARIOS[name] = (defaults, handler)
        return handler
    return register


def _is_list(request: Request) -> bool:
    return request.method == "GET" and request.path.strip("/") == "customers"


@scenario("plain")
def _plain(hostile: Hostile, request: Request) -> Reply | None:
    """Well-behaved: 3 pages of 2; useful as a second server or a baseline."""
    return None


@scenario("self_link")
def _self_link(hostile: Hostile, request: Request) -> Reply | None:
    """Every list page's ``next`` is the URL just requested: a one-page loop."""
    if not _is_list(request):
        return None
    here = f"{hostile.base}{request.path}" + (f"?{request.query}" if request.query else "")
    return page_reply(hostile, request, customers_of_page(1), 4, None, next=here)


@scenario("cycle")
def _cycle(hostile: Hostile, request: Request) -> Reply | None:
    """Page 1 links to page 2, whose ``next`` is page 1 again."""
    if not _is_list(request):
        return None
    if request.page == 1:
        return page_reply(hostile, request, customers_of_page(1), 4, 2)
    return page_reply(hostile, request, customers_of_page(2), 4, None,
                      next=hostile.link(request, 1))


@scenario("bogus_count", count=3_000_000, page2="404")
def _bogus_count(hostile: Hostile, request: Request) -> Reply | None:
    """``count`` claims millions; page 1 holds 2 and links page 2, which has nothing.

    Option ``page2``: "404" (Invalid page), "empty" (200, no results, ``next`` null) or
    "empty_linked" (200, no results, ``next`` the page after, as the count implies).
    """
    if not _is_list(request):
        return None
    count, page = int(hostile.options["count"]), request.page
    if page == 1:
        return page_reply(hostile, request, customers_of_page(1), count, 2)
    mode = hostile.options["page2"]
    if mode == "404":
        return json_reply(404, INVALID_PAGE)
    return page_reply(hostile, request, [], count, page + 1 if mode == "empty_linked" else None)


@scenario("count_without_links", count=10, pages=2)
def _count_without_links(hostile: Hostile, request: Request) -> Reply | None:
    """Pages carry ``count`` and ``results`` only (no ``next`` key); count overstates.

    Pages 1..``pages`` hold two customers each; any later page is 200 with no results.
    """
    if not _is_list(request):
        return None
    page = request.page
    results = customers_of_page(page) if 1 <= page <= int(hostile.options["pages"]) else []
    return json_reply(200, {"count": int(hostile.options["count"]), "results": results})


@scenario("retry_after", failures=1, retry_after="86400", status=429, only_lists=True)
def _retry_after(hostile: Hostile, request: Request) -> Reply | None:
    """The first ``failures`` list requests get ``status`` with ``Retry-After`` verbatim.

    ``retry_after`` may be anything ("inf", "nan", "-5", an HTTP date); null sends no
    header. With ``only_lists`` false, every API request counts, writes included.
    """
    options = hostile.options
    if options["only_lists"] and not _is_list(request):
        return None
    if hostile.count("throttled") > int(options["failures"]):
        return None
    value = options["retry_after"]
    headers = {} if value is None else {"Retry-After": str(value)}
    return json_reply(int(options["status"]), {"detail": "Request was throttled."}, headers)


@scenario("echo_token", status=400, html=False)
def _echo_token(hostile: Hostile, request: Request) -> Reply | None:
    """Every API request gets ``status`` with a body quoting its Authorization header.

    The body is JSON (``detail`` and ``authorization``), or an HTML page with ``html``.
    """
    authorization = _header(request.headers, "Authorization")
    status = int(hostile.options["status"])
    if hostile.options["html"]:
        page = f"<html><body><h1>{status}</h1><p>Authorization: {authorization}</p></body></html>"
        return Reply(status, page.encode(), content_type="text/html")
    return json_reply(status, {"detail": f"Rejected request with {authorization}",
                               "authorization": authorization})


@scenario("redirect_post", status=302, location=None, id="hostile00042")
def _redirect_post(hostile: Hostile, request: Request) -> Reply | None:
    """``POST /customers/`` answers ``status`` (a 3xx) with a ``Location``.

    ``location`` defaults to ``/customers/{id}/`` on this server; give a full URL (say,
    another HostileServer's) to send the client elsewhere. GET there returns a customer;
    POSTs received are in the log.
    """
    if request.method != "POST" or request.path.strip("/") != "customers":
        return None
    options = hostile.options
    location = options["location"] or f"{hostile.base}/customers/{options['id']}/"
    return json_reply(int(options["status"]), {"detail": "Moved."}, {"Location": location})


@scenario("prefix_links", prefix="/api/v1")
def _prefix_links(hostile: Hostile, request: Request) -> Reply | None:
    """The API lives under ``prefix``, but list links omit it; un-prefixed paths 404."""
    prefix = "/" + str(hostile.options["prefix"]).strip("/")
    if not request.path.startswith(prefix + "/"):
        return json_reply(404, NOT_FOUND)
    inner = request.path[len(prefix):]
    if request.method == "GET" and inner.strip("/") == "customers":
        return plain_list(hostile, request, path=inner)
    return plain(hostile, request, path=inner)


@scenario("other_host_link", link_host="localhost", link_base=None)
def _other_host_link(hostile: Hostile, request: Request) -> Reply | None:
    """Page 1's ``next`` points at another host; page 2 (served anywhere) is the last.

    The link goes to ``link_base`` (e.g. a second server's URL) if given, else to this
    server's port under the name ``link_host``; the log's ``host`` says which name a
    request used, ``authorization`` whether the token went along.
    """
    if not _is_list(request):
        return None
    if request.page > 1:
        return page_reply(hostile, request, customers_of_page(2), 4, None)
    base = hostile.options["link_base"]
    if not base:
        port = urlsplit(hostile.base).port
        base = f"http://{hostile.options['link_host']}:{port}"
    return page_reply(hostile, request, customers_of_page(1), 4, None,
                      next=hostile.link(request, 2, base=base))


@scenario("nan_body", bad="nan", bad_page=1, pages=2)
def _nan_body(hostile: Hostile, request: Request) -> Reply | None:
    """List page ``bad_page`` of ``pages`` is a 200 whose body is not valid JSON text.

    ``bad``: "nan" (a balance of NaN), "infinity" (Infinity) or "utf8" (a name holding
    the bytes FF FE, invalid UTF-8). The other pages are fine.
    """
    if not _is_list(request):
        return None
    options = hostile.options
    reply = plain_list(hostile, request, pages=int(options["pages"]))
    if request.page != int(options["bad_page"]) or reply.status != 200:
        return reply
    body = json.loads(reply.body)
    first = body["results"][0]
    if options["bad"] == "utf8":
        first["name"] = "@@BAD@@"
        return Reply(200, json.dumps(body).encode().replace(b"@@BAD@@", b"Bad \xff\xfe"))
    first["aggregations"]["balance"] = float("nan" if options["bad"] == "nan" else "inf")
    return json_reply(200, body)


@scenario("missing_id", id="absent")
def _missing_id(hostile: Hostile, request: Request) -> Reply | None:
    """One page of 3 customers; the second has no ``id`` ("absent"), or "null", "empty"."""
    if not _is_list(request):
        return None
    results = [customer(number) for number in (1, 2, 3)]
    mode = hostile.options["id"]
    if mode == "absent":
        del results[1]["id"]
    else:
        results[1]["id"] = None if mode == "null" else ""
    return page_reply(hostile, request, results, 3, None)


@scenario("vanishing_page", vanished=2, status=404)
def _vanishing_page(hostile: Hostile, request: Request) -> Reply | None:
    """A 3-page list whose page ``vanished`` answers ``status`` (404: Invalid page)."""
    if not _is_list(request) or request.page != int(hostile.options["vanished"]):
        return None
    return json_reply(int(hostile.options["status"]), INVALID_PAGE)


# -- HTTP plumbing -----------------------------------------------------------------------


class HostileHTTPServer(ThreadingHTTPServer):
    """The HTTP server holding one scenario."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], scenario_name: str, options: dict) -> None:
        defaults, self.handler = SCENARIOS[scenario_name]
        unknown = set(options) - set(defaults)
        if unknown:
            raise ValueError(f"scenario {scenario_name} has no options {sorted(unknown)}; "
                             f"known: {sorted(defaults)}")
        super().__init__(address, HostileHandler)
        host, port = self.server_address[:2]
        self.hostile = Hostile(scenario_name, {**defaults, **options}, f"http://{host}:{port}")


class HostileHandler(BaseHTTPRequestHandler):
    """Route ``/_hostile/`` to the log, everything else to the scenario."""

    protocol_version = "HTTP/1.1"
    server: HostileHTTPServer
    server_version = "hostile-server/0.1"

    def do_GET(self) -> None:
        """Serve GET."""
        self._dispatch()

    def do_POST(self) -> None:
        """Serve POST."""
        self._dispatch()

    def do_PATCH(self) -> None:
        """Serve PATCH."""
        self._dispatch()

    def do_PUT(self) -> None:
        """Serve PUT."""
        self._dispatch()

    def do_DELETE(self) -> None:
        """Serve DELETE."""
        self._dispatch()

    def log_message(self, format: str, *args: object) -> None:
        """Stay quiet: the request log is the record."""

    def _dispatch(self) -> None:
        url = urlsplit(self.path)
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        request = Request(self.command, url.path, url.query, dict(self.headers.items()), body)
        hostile = self.server.hostile
        if url.path.startswith("/_hostile/"):
            self._send(self._control(request))
            return
        reply = self.server.handler(hostile, request) or plain(hostile, request)
        hostile.record(request, reply)
        self._send(reply)

    def _control(self, request: Request) -> Reply:
        hostile, route = self.server.hostile, (request.method, request.path.rstrip("/"))
        if route == ("GET", "/_hostile/requests"):
            return json_reply(200, list(hostile.log))
        if route == ("DELETE", "/_hostile/requests"):
            hostile.log.clear()
            return json_reply(200, [])
        if route == ("GET", "/_hostile/health"):
            return json_reply(200, {"ok": True, "scenario": hostile.scenario,
                                    "options": hostile.options})
        return json_reply(404, NOT_FOUND)

    def _send(self, reply: Reply) -> None:
        self.send_response(reply.status)
        self.send_header("Content-Type", reply.content_type)
        self.send_header("Content-Length", str(len(reply.body)))
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(reply.body)


# -- running it: command line and a process for tests ------------------------------------


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def _parse_option(text: str) -> tuple[str, object]:
    """Parse ``key=value``; the value is JSON when it parses (2, true, null), else text."""
    key, _, value = text.partition("=")
    try:
        return key, json.loads(value)
    except ValueError:
        return key, value


def main(argv: list[str] | None = None) -> None:
    """Serve one scenario until SIGTERM or SIGINT."""
    parser = argparse.ArgumentParser(prog="hostile-server", description=__doc__.split("\n")[0])
    parser.add_argument("--scenario", choices=sorted(SCENARIOS), default="plain")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--options", type=json.loads, default={}, help="options as JSON")
    parser.add_argument("--option", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--list", action="store_true", help="list scenarios and options")
    args = parser.parse_args(argv)
    if args.list:
        for name, (defaults, handler) in sorted(SCENARIOS.items()):
            print(f"{name} {json.dumps(defaults)}: {(handler.__doc__ or '').splitlines()[0]}")
        return
    options = {**args.options, **dict(map(_parse_option, args.option))}
    try:
        server = HostileHTTPServer((args.host, args.port), args.scenario, options)
    except ValueError as error:
        parser.error(str(error))
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)
    try:  # the URL line inside: a signal right after it is a clean stop too
        print(f"hostile-server listening on {server.hostile.base} scenario {args.scenario}",
              flush=True)
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


class HostileServer:
    """A hostile-server process on an ephemeral 127.0.0.1 port; a context manager.

    ``HostileServer("retry_after", failures=2, retry_after="inf")``: options as in the
    scenario's registration (unknown ones fail the start). ``url`` is what a tap or target
    is configured with; ``received()`` reads the request log back.
    """

    def __init__(self, scenario_name: str, **options: object) -> None:
        if scenario_name not in SCENARIOS:
            raise ValueError(f"unknown scenario {scenario_name}; known: {sorted(SCENARIOS)}")
        self.scenario, self.options = scenario_name, options
        self.url = ""
        self._process: subprocess.Popen | None = None

    def start(self, timeout: float = 30.0) -> HostileServer:
        """Start the process and wait for the line that names its URL."""
        command = [sys.executable, str(Path(__file__).resolve()), "--scenario",
                   self.scenario, "--port", "0", "--options", json.dumps(self.options)]
        self._process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True,
                                         env={**os.environ, "PYTHONUNBUFFERED": "1"})
        assert self._process.stdout is not None
        started = time.monotonic()
        line = self._process.stdout.readline()
        if "listening on" not in line or time.monotonic() - started > timeout:
            self.stop()
            raise RuntimeError(f"hostile-server {self.scenario} did not start: {line!r}")
        self.url = line.split("listening on ")[1].split()[0]
        return self

    def stop(self) -> None:
        """Stop the process (SIGTERM, then SIGKILL after 5 s)."""
        if self._process and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()

    @property
    def port(self) -> int:
        """Return the port the server listens on."""
        return int(urlsplit(self.url).port or 0)

    def __enter__(self) -> HostileServer:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.stop()

    def received(self, method: str | None = None, path: str | None = None) -> list[dict]:
        """Return the logged requests, oldest first, optionally of one method or path.

        Each is a dict: method, path, query, params (name to list of values), host,
        headers, authorization (the header's value or None), has_authorization, body
        (text), status (what the server answered).
        """
        log = self._control("GET")
        return [entry for entry in log
                if method in (None, entry["method"]) and path in (None, entry["path"])]

    def clear(self) -> None:
        """Empty the request log."""
        self._control("DELETE")

    def _control(self, method: str) -> list[dict]:
        request = UrlRequest(f"{self.url}/_hostile/requests", method=method)
        try:
            with urlopen(request, timeout=30) as response:
                return json.loads(response.read())
        except HTTPError as error:
            raise RuntimeError(f"hostile-server control {method}: {error}") from error


if __name__ == "__main__":
    main()
