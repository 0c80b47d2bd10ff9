"""The shared HTTP client: environment, encoding, redirects and failure classification."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from typing import ClassVar

import pytest
from local_http import serving
from requests import exceptions as rex
from urllib3 import exceptions as uex

from piriod.client import PiriodClient
from piriod.transport import _as_body_error, _as_requests_error


class _Proxy(BaseHTTPRequestHandler):
    """A forward proxy that answers every GET itself with an empty customer list."""

    seen: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        self.seen.append(self.path)
        body = json.dumps({"count": 0, "next": None, "results": []}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        """Keep the test output quiet."""


@pytest.fixture
def proxy() -> Iterator[str]:
    _Proxy.seen = []
    with serving(_Proxy) as url:
        yield url


def test_proxy_variables_are_read_once_and_still_used(proxy, monkeypatch):
    for name in ("NO_PROXY", "no_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY",
                 "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", proxy)
    client = PiriodClient("http://api.piriod.invalid", "token")
    assert client.session.trust_env is False  # no per-request look-ups of the environment
    monkeypatch.delenv("HTTP_PROXY")  # resolved at start-up: later changes do not matter
    assert list(client.iter_customers()) == []
    # A request through a proxy names the absolute URL of the API, not just its path.
    assert _Proxy.seen == ["http://api.piriod.invalid/customers/?page_size=100"]


def test_no_proxy_still_bypasses_the_proxy(monkeypatch):
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    monkeypatch.setenv("NO_PROXY", "api.piriod.invalid")
    client = PiriodClient("http://api.piriod.invalid", "token")
    assert not client.session.proxies


def test_ca_bundle_variable_is_still_honoured(monkeypatch, tmp_path):
    bundle = tmp_path / "ca.pem"
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(bundle))
    client = PiriodClient("https://api.piriod.invalid", "token")
    assert client.session.verify == str(bundle)


class _Api(BaseHTTPRequestHandler):
    """A tiny API: /old/ redirects to /customers/; POST echoes what it received."""

    seen: ClassVar[list[tuple[str, str, dict, bytes]]] = []

    def _answer(self, status: int, body: dict, headers: dict | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        for name, value in {"Content-Type": "application/json", **(headers or {})}.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        self.seen.append(("GET", self.path, dict(self.headers), b""))
        if self.path.startswith("/old/"):
            self._answer(302, {}, {"Location": "/customers/?page_size=100"})
        else:
            self._answer(200, {"count": 1, "next": None, "results": [{"id": "r1"}]})

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.seen.append(("POST", self.path, dict(self.headers), body))
        self._answer(201, {"id": "new", **json.loads(body)})

    def log_message(self, *args: object) -> None:
        """Keep the test output quiet."""


@pytest.fixture
def api() -> Iterator[str]:
    _Api.seen = []
    with serving(_Api) as url:
        yield url


def test_requests_carry_the_token_json_and_quoted_parameters(api):
    client = PiriodClient(api, "tok")
    assert client.create_customer({"name": "Ñandú"}) == {"id": "new", "name": "Ñandú"}
    list(client.iter_customers({"email": "a b@c.example"}))
    client.get_customer("an id")  # an id from a record: quoted as requests quotes it
    (_, _, headers, body), (_, path, _, _), (_, id_path, _, _) = _Api.seen
    assert id_path == "/customers/an%20id/"
    assert headers["Authorization"] == "Bearer tok"
    assert headers["Content-Type"] == "application/json"
    assert json.loads(body) == {"name": "Ñandú"}
    assert path == "/customers/?page_size=100&email=a+b%40c.example"


def test_reading_takes_the_lists_path(api):
    """Listing, counting and fetching one by id go to the path given, not /customers/."""
    client = PiriodClient(api, "tok")
    pages = list(client.list_pages({"ordering": "created,id"}, max_workers=1,
                                   path="/invoices/"))
    assert client.count(path="/invoices/") == 1
    assert client.get_one("inv 1", path="/invoices/") == {"count": 1, "next": None,
                                                          "results": [{"id": "r1"}]}
    assert client.get_one("..", path="/invoices/") is None  # no request: not an id
    assert [page.results for page in pages] == [[{"id": "r1"}]]
    assert [path for _, path, _, _ in _Api.seen] == [
        "/invoices/?page_size=100&ordering=created%2Cid", "/invoices/?page_size=1",
        "/invoices/inv%201/"]


def test_a_get_follows_a_redirect_on_the_same_origin(api):
    client = PiriodClient(api, "tok")
    page = client._call("GET", "/old/").payload
    assert page["results"] == [{"id": "r1"}]
    assert [path for _, path, _, _ in _Api.seen][-1] == "/customers/?page_size=100"
    assert all(headers["Authorization"] == "Bearer tok" for _, _, headers, _ in _Api.seen)


def test_a_refused_connection_is_known_not_sent_and_a_timeout_is_timed_out(api):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    refused = PiriodClient(f"http://127.0.0.1:{closed_port}", "tok")._attempt(
        "POST", "/customers/", None, {"name": "x"})
    assert refused.not_sent and not refused.timed_out  # a POST that may be retried
    with socket.socket() as silent:  # accepts, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        slow = PiriodClient(f"http://127.0.0.1:{silent.getsockname()[1]}", "tok",
                            timeout=0.2)
        outcome = slow._attempt("POST", "/customers/", None, {"name": "x"})
    assert outcome.timed_out and not outcome.not_sent  # outcome unknown: look it up first


@pytest.mark.parametrize(("error", "expected"), [
    (uex.ProtocolError("reset"), rex.ConnectionError),
    (ConnectionResetError(), rex.ConnectionError),
    (uex.MaxRetryError(None, "/", reason=uex.ConnectTimeoutError()), rex.ConnectTimeout),
    (uex.MaxRetryError(None, "/", reason=uex.NewConnectionError(None, "refused")),
     rex.ConnectionError),
    (uex.MaxRetryError(None, "/", reason=uex.ProxyError("p", OSError())), rex.ProxyError),
    (uex.ReadTimeoutError(None, "/", "slow"), rex.ReadTimeout),
    (uex.DecodeError(), rex.ContentDecodingError),
])
def test_urllib3_failures_become_the_exceptions_requests_raises(error, expected):
    """The client's retry rules are written against requests' exceptions."""
    translated = _as_requests_error(error)
    assert type(translated) is expected


def test_failures_reading_a_body_become_what_response_content_raises():
    assert type(_as_body_error(uex.ProtocolError("cut"))) is rex.ChunkedEncodingError
    assert type(_as_body_error(uex.ReadTimeoutError(None, "/", "slow"))) is rex.ConnectionError
    assert type(_as_body_error(uex.DecodeError())) is rex.ContentDecodingError
