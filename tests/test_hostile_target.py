"""target-piriod, as a real process fed Singer messages, against a misbehaving server.

Issue 11 (hostile input, the server-side items) and issue 12.4 (the token stays home). Each
test runs ``python -m target_piriod`` against a ``HostileServer`` scenario and asserts a
correct load, or a non-zero exit whose message names what failed, with no traceback, no
token anywhere (stderr, stdout, the dead-letter file) and, where the server misbehaved
before anything could be matched, nothing written.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import ClassVar
from urllib.parse import quote

import pytest
from hostile_server import HostileServer
from local_http import serving
from target_helpers import TARGET, TargetRun, messages_for, new_customer, write_config

from piriod.client import PiriodClient
from piriod.errors import RedirectError

MARKER = "s3cr3tMARK"  # in every test token: found nowhere in any output, even in part
TOKEN = f"tok-{MARKER}-4f9a"
ODD_TOKEN = f'tok"\\%ñ{MARKER}'  # a quote, a backslash, a percent sign, Latin-1
CUSTOMER_PATH = re.compile(r"^/customers/([^/]+/)?$")

@dataclass
class HostileTargetRun(TargetRun):
    """A target run, with the dead-letter file's text (to look for what must not be there)."""

    @property
    def dead_letters_text(self) -> str:
        path = self.dead_letter_path
        return path.read_text(encoding="utf-8") if path.exists() else ""

    @property
    def everything(self) -> str:
        return self.stderr + self.stdout + self.dead_letters_text


def run_target(url: str, tmp_path: Path, records: list[dict] | None = None,
               token: str = TOKEN, timeout: float = 90, **config: object) -> HostileTargetRun:
    """Run the target on a SCHEMA, ``records`` (one new customer by default) and a STATE."""
    settings = {"auth_token": token, "api_url": url, "max_retries": 1, "request_timeout": 5,
                "match_field": "tax_id", "dead_letter_path": str(tmp_path / "rejects.jsonl"),
                **config}
    messages = messages_for([new_customer(1)] if records is None else records)
    command = [*TARGET, "--config", str(write_config(tmp_path, settings))]
    done = subprocess.run(command, input="".join(json.dumps(m) + "\n" for m in messages),
                          capture_output=True, text=True, timeout=timeout, check=False)
    states = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
    return HostileTargetRun(done.returncode, done.stdout, done.stderr,
                            Path(settings["dead_letter_path"]), states)


def assert_fails_clearly(run: HostileTargetRun, *phrases: str) -> None:
    """Non-zero exit, each phrase in stderr, no traceback, no token, no STATE."""
    assert run.returncode != 0, run.stderr[-3000:]
    assert "Traceback" not in run.stderr, run.stderr[-3000:]
    for phrase in phrases:
        assert phrase in run.stderr, f"{phrase!r} not in:\n{run.stderr[-3000:]}"
    assert MARKER not in run.everything
    assert run.states == [], "no STATE past unwritten records"


def assert_loaded(run: HostileTargetRun, **counts: int) -> None:
    """Exit 0, the summary's counters as given, the final STATE, no token anywhere."""
    assert run.returncode == 0, run.stderr[-3000:]
    assert "Traceback" not in run.stderr
    for name, value in counts.items():
        assert run.count(name) == value, run.summary
    assert run.states and "loaded" in run.states[-1], "the input's final STATE comes out"
    assert MARKER not in run.everything


# -- 2. redirected POSTs ---------------------------------------------------------------------


def test_a_303_after_a_post_is_one_get_of_the_created_customer_never_a_second_post(tmp_path):
    with HostileServer("redirect_post", status=303, id="hostile00042") as server:
        run = run_target(server.url, tmp_path)
        posts = server.received("POST")
        after = server.received()[server.received().index(posts[0]) + 1:]
    assert_loaded(run, created=1, rejected=0)
    assert len(posts) == 1
    assert [(e["method"], e["path"]) for e in after] == [("GET", "/customers/hostile00042/")]


@pytest.mark.parametrize("status", [307, 308])
def test_a_307_or_308_to_another_host_never_carries_the_body_there(tmp_path, status):
    with HostileServer("plain") as elsewhere:
        location = f"{elsewhere.url}/customers/"
        with HostileServer("redirect_post", status=status, location=location) as server:
            run = run_target(server.url, tmp_path)
            posts = server.received("POST")
        assert elsewhere.received() == [], "the record (and the token) went to another host"
    assert_fails_clearly(run, f"POST /customers/ answered {status}", location)
    assert len(posts) == 1


def test_a_303_to_another_server_is_not_followed(tmp_path):
    with HostileServer("plain") as elsewhere:
        location = f"{elsewhere.url}/customers/hostile00042/"
        with HostileServer("redirect_post", status=303, location=location) as server:
            run = run_target(server.url, tmp_path)
            log = server.received()
        assert elsewhere.received() == [], "the token went to another server"
    assert_fails_clearly(run, "POST /customers/ answered 303", location)
    assert log[-1]["method"] == "POST", "nothing follows the POST"


class _SeeOtherByName(BaseHTTPRequestHandler):
    """Answers every POST with a 303 to this very server, named ``localhost``."""

    protocol_version = "HTTP/1.1"
    seen: ClassVar[list[tuple[str, str]]] = []

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.seen.append(("POST", self.headers.get("Host", "")))
        port = self.server.server_address[1]
        self.send_response(303)
        self.send_header("Location", f"http://localhost:{port}/customers/c1/")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self) -> None:
        self.seen.append(("GET", self.headers.get("Host", "")))
        self.send_response(500)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        """Keep the test output quiet."""


def test_a_303_to_the_same_server_under_another_name_is_not_followed():
    """The client the target writes with, in this process: an origin is its host name too."""
    _SeeOtherByName.seen = []
    with serving(_SeeOtherByName) as url:
        client = PiriodClient(url, TOKEN)
        with pytest.raises(RedirectError, match="answered 303 redirecting to 'http://localhost"):
            client.create_customer({"name": "X"})
    assert _SeeOtherByName.seen == [("POST", url.removeprefix("http://"))]


@pytest.mark.parametrize("status", [301, 302, 307])
def test_a_redirected_post_on_the_same_host_is_a_clear_error(tmp_path, status):
    with HostileServer("redirect_post", status=status, id="hostile00042") as server:
        run = run_target(server.url, tmp_path)
        posts = server.received("POST")
        log = server.received()
    assert_fails_clearly(run, f"POST /customers/ answered {status}",
                         f"{server.url}/customers/hostile00042/")
    assert len(posts) == 1 and log[-1]["method"] == "POST", "nothing follows the POST"


# -- 7. pagination loops -------------------------------------------------------------------


@pytest.mark.parametrize("scenario", ["self_link", "cycle"])
def test_looping_links_fail_the_index_read_and_nothing_is_written(tmp_path, scenario):
    with HostileServer(scenario) as server:
        run = run_target(server.url, tmp_path)
        received = server.received()
    assert_fails_clearly(run, "links cycle", "leads back to a page already read")
    assert [entry for entry in received if entry["method"] != "GET"] == []
    assert len(received) <= 3


# -- 8. a bogus count ------------------------------------------------------------------------


@pytest.mark.parametrize("page2", ["404", "empty", "empty_linked"])
def test_a_bogus_count_indexes_the_data_there_is(tmp_path, page2):
    known = {"name": "Renamed 2 SpA", "tax_id": "77.000.002-2"}  # customer 2's key, page 1
    with HostileServer("bogus_count", count=3_000_000, page2=page2) as server:
        run = run_target(server.url, tmp_path, records=[known, new_customer(1)])
        received = server.received()
    assert_loaded(run, created=1, updated=1, rejected=0)
    assert "3000000" in run.stderr and "past its data" in run.stderr
    assert len(received) < 40, f"{len(received)} requests for a 2-customer account"
    assert sorted((e["method"], e["path"]) for e in received if e["method"] != "GET") == [
        ("PATCH", "/customers/hostile00002/"), ("POST", "/customers/")]


# -- 9. Retry-After --------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["-5", "Wed, 21 Oct 2015 07:28:00 GMT"])
def test_a_retry_after_in_the_past_is_an_immediate_retry(tmp_path, value):
    with HostileServer("retry_after", failures=1, retry_after=value) as server:
        started = time.monotonic()
        run = run_target(server.url, tmp_path)
    assert_loaded(run, created=1)
    assert "throttled (429): every request waits 0.0 s" in run.stderr
    assert time.monotonic() - started < 30


def test_a_throttled_post_is_retried_once_throttling_ends(tmp_path):
    with HostileServer("retry_after", failures=1, retry_after="-5", only_lists=False) as server:
        run = run_target(server.url, tmp_path, records=[new_customer(1)])
        statuses = [(e["method"], e["status"]) for e in server.received()]
    assert_loaded(run, created=1)
    assert statuses.count(("POST", 201)) == 1


# -- 10. the token's own characters -----------------------------------------------------------


@pytest.mark.parametrize("padding", ["\n", "\r\n", " \t"])
def test_a_token_with_surrounding_whitespace_works_and_is_never_printed(tmp_path, padding):
    with HostileServer("plain") as server:
        run = run_target(server.url, tmp_path, token=TOKEN + padding)
        received = server.received()
    assert_loaded(run, created=1)
    assert {entry["authorization"] for entry in received} == {f"Bearer {TOKEN}"}


@pytest.mark.parametrize("token", [f"tok-{MARKER}\x01x", f"tok\n{MARKER}", f"tok-{MARKER}\x7f",
                                   f"tok-{MARKER}-€"])
def test_a_token_that_cannot_be_a_header_is_refused_at_start_up(tmp_path, token):
    """A config error before any request, its message not quoting the token."""
    with HostileServer("plain") as server:
        run = run_target(server.url, tmp_path, token=token)
        received = server.received()
    assert_fails_clearly(run, "Error: auth_token contains control or non-Latin-1 characters")
    assert received == []


# -- 11. a server echoing the token ----------------------------------------------------------


@pytest.mark.parametrize(("status", "html"), [(400, False), (500, False), (400, True),
                                              (500, True)])
@pytest.mark.parametrize("token", [TOKEN, ODD_TOKEN, f"tok%{MARKER}%41"])
def test_a_token_echoed_by_the_index_read_is_redacted(tmp_path, status, html, token):
    with HostileServer("echo_token", status=status, html=html) as server:
        run = run_target(server.url, tmp_path, token=token)
    assert_fails_clearly(run, "GET /customers/", str(status))
    for form in (token, json.dumps(token)[1:-1], quote(token, safe="")):
        assert form not in run.everything
    assert ("an HTML page" if html else "Bearer ***") in run.stderr


class _EchoWrites(BaseHTTPRequestHandler):
    """Lists no customers; refuses every write with a 400 quoting its Authorization."""

    protocol_version = "HTTP/1.1"
    html = False

    def do_GET(self) -> None:
        self._send(200, json.dumps({"count": 0, "next": None, "results": []}).encode())

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        authorization = self.headers.get("Authorization")
        if self.html:
            body = f"<html><p>Bad request from {authorization}</p></html>".encode()
        else:
            body = json.dumps({"detail": f"Bad request from {authorization}",
                               "authorization": authorization}, ensure_ascii=False).encode()
        self._send(400, body)

    def _send(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "text/html" if self.html else "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        """Keep the test output quiet."""


@pytest.fixture(params=[False, True], ids=["json", "html"])
def echo_writes(request) -> Iterator[str]:
    handler = type("Handler", (_EchoWrites,), {"html": request.param})
    with serving(handler) as url:
        yield url


@pytest.mark.parametrize("token", [TOKEN, ODD_TOKEN])
def test_a_token_echoed_in_a_refused_write_stays_out_of_the_dead_letter_file(
        tmp_path, echo_writes, token):
    run = run_target(echo_writes, tmp_path, token=token, max_rejects=5)
    assert_loaded(run, created=0, rejected=1)
    assert len(run.rejects) == 1 and run.rejects[0]["status"] == 400
    assert "***" in json.dumps(run.rejects[0], ensure_ascii=False)
    for form in (token, json.dumps(token)[1:-1], quote(token, safe="")):
        assert form not in run.everything


# -- 12. ids that are paths ------------------------------------------------------------------


def test_an_id_like_a_path_never_leaves_customers(tmp_path):
    records = [{"id": "../invoices/inv1", "name": "Traversal SpA"},
               {"id": "..", "name": "Dot dot SpA"},
               {"id": "a/b?c=1#d", "name": "Query SpA"},
               {"id": "%2e%2e%2finvoices", "name": "Encoded SpA"},
               {"id": "hostile00003", "name": "Fine SpA"}]
    with HostileServer("plain") as server:
        run = run_target(server.url, tmp_path, records=records, match_field="id",
                         max_rejects=5)
        paths = [entry["path"] for entry in server.received()]
    assert run.returncode == 0, run.stderr[-3000:]
    assert all(CUSTOMER_PATH.match(path) for path in paths), paths
    assert "/customers/hostile00003/" in paths
    assert "/customers/..%2Finvoices%2Finv1/" in paths, "sent quoted as one segment"
    assert [(r["key"], r["reason"]) for r in run.rejects] == [
        ({"field": "id", "value": ".."}, "not_found")]


# -- 13 and 12.4. the token stays home -------------------------------------------------------


def test_plain_http_to_another_machine_is_refused_at_start_up(tmp_path):
    run = run_target("http://example.invalid", tmp_path)
    assert_fails_clearly(run, "api_url", "http://example.invalid", "https")
    assert "still failing" not in run.stderr, "refused, not tried"


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_plain_http_to_this_machine_is_allowed(tmp_path, host):
    with HostileServer("plain") as server:
        run = run_target(f"http://{host}:{server.port}", tmp_path)
    assert_loaded(run, created=1)


def test_a_next_link_to_another_host_name_is_asked_of_api_url(tmp_path):
    known = {"name": "Renamed 3 SpA", "tax_id": "77.000.003-3"}  # on page 2
    with HostileServer("other_host_link", link_host="localhost") as server:
        run = run_target(server.url, tmp_path, records=[known])
        received = server.received()
    assert_loaded(run, updated=1, created=0)
    assert {entry["host"] for entry in received} == {f"127.0.0.1:{server.port}"}


def test_a_next_link_to_another_server_never_reaches_it(tmp_path):
    known = {"name": "Renamed 3 SpA", "tax_id": "77.000.003-3"}  # on page 2
    with HostileServer("plain") as elsewhere, \
            HostileServer("other_host_link", link_base=elsewhere.url) as server:
        run = run_target(server.url, tmp_path, records=[known])
        assert elsewhere.received() == [], "the token went to another server"
    assert_loaded(run, updated=1, created=0)


# -- 15. settings that cannot work -----------------------------------------------------------


@pytest.mark.parametrize("api_url", ["api.piriod.com", "127.0.0.1:8765"])
def test_an_api_url_without_a_scheme_is_a_config_error_with_an_example(tmp_path, api_url):
    run = run_target(api_url, tmp_path)
    assert_fails_clearly(run, "api_url", "e.g. https://api.piriod.com")


# -- 16. a customer without an id in the index ------------------------------------------------


@pytest.mark.parametrize("mode", ["absent", "null", "empty"])
def test_a_customer_without_an_id_fails_the_index_read_and_nothing_is_written(tmp_path, mode):
    with HostileServer("missing_id", id=mode) as server:
        run = run_target(server.url, tmp_path)
        received = server.received()
    assert_fails_clearly(run, "page 1 of the listing held a customer without an id")
    assert [entry for entry in received if entry["method"] != "GET"] == []


# -- 17. a prefix the links forget -------------------------------------------------------------


def test_links_without_api_urls_prefix_still_index_every_page(tmp_path):
    known = {"name": "Renamed 5 SpA", "tax_id": "77.000.005-5"}  # on page 3
    with HostileServer("prefix_links", prefix="/api/v1") as server:
        run = run_target(f"{server.url}/api/v1", tmp_path, records=[known, new_customer(1)])
        received = server.received()
    assert_loaded(run, updated=1, created=1)
    assert all(entry["path"].startswith("/api/v1/customers/") for entry in received)
    assert all(entry["status"] in (200, 201) for entry in received), received


# -- bodies that are not JSON ------------------------------------------------------------------


@pytest.mark.parametrize("bad", ["nan", "infinity", "utf8"])
def test_an_index_page_that_is_not_json_fails_and_nothing_is_written(tmp_path, bad):
    with HostileServer("nan_body", bad=bad, bad_page=2, pages=3) as server:
        run = run_target(server.url, tmp_path)
        received = server.received()
    assert_fails_clearly(run, "GET /customers/ still failing after 2 attempts", "not JSON")
    assert [entry for entry in received if entry["method"] != "GET"] == []
