"""target-piriod's HTTP client and its environment: proxies are read once, still used."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest

from target_piriod.client import PiriodClient


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
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Proxy)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


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
