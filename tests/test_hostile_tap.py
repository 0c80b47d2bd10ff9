"""tap-piriod, as a real process, against a misbehaving server (issue 11, issue 12.4).

Each test runs ``python -m tap_piriod`` against a ``HostileServer`` scenario and asserts
the one acceptable outcome: a correct run, or a non-zero exit whose message names what
failed, without a Python traceback, without the token, and without duplicates or a
bookmark past what was read. Retries are kept to one so that failing runs end quickly.
"""

from __future__ import annotations

import json
import logging
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import pytest
from hostile_server import HostileServer
from tap_helpers import TAP, TapRun, write_json

from piriod.client import PiriodClient
from piriod.retry import RETRY_AFTER_CAP_SECONDS

MARKER = "s3cr3tMARK"  # in every test token: found nowhere in any output, even in part
TOKEN = f"tok-{MARKER}-4f9a"
ALL_IDS = [f"hostile{n:05d}" for n in range(1, 7)]


@dataclass
class HostileTapRun(TapRun):
    """A tap run, with its stdout as text (to look for what must not be there)."""

    stdout: str = ""


def run_tap(url: str, tmp_path: Path, token: str = TOKEN, timeout: float = 90,
            **config: object) -> HostileTapRun:
    """Run the tap against ``url`` to its end; parse what it wrote."""
    settings = {"auth_token": token, "api_url": url, "max_retries": 1, **config}
    command = [*TAP, "--config", write_json(tmp_path, "config.json", settings)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                          check=False)
    messages = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
    return HostileTapRun(done.returncode, done.stderr, messages, done.stdout)


def assert_fails_clearly(run: HostileTapRun, *phrases: str) -> None:
    """Non-zero exit, each phrase in stderr, no traceback, no token."""
    assert run.returncode != 0, run.stderr[-3000:]
    assert "Traceback" not in run.stderr, run.stderr[-3000:]
    for phrase in phrases:
        assert phrase in run.stderr, f"{phrase!r} not in:\n{run.stderr[-3000:]}"
    assert_token_never_printed(run)


def assert_complete(run: HostileTapRun, ids: list[str]) -> None:
    """Exit 0 with exactly these customers, once each, and a final bookmark."""
    assert run.returncode == 0, run.stderr[-3000:]
    assert "Traceback" not in run.stderr
    assert run.ids == ids
    assert run.states, "a complete run ends with a STATE"
    assert_token_never_printed(run)


def assert_token_never_printed(run: HostileTapRun, marker: str = MARKER) -> None:
    for text in (run.stderr, run.stdout):
        assert marker not in text


def list_requests(server: HostileServer) -> list[dict]:
    return [entry for entry in server.received("GET") if entry["path"].endswith("/customers/")]


# -- 7. pagination loops -------------------------------------------------------------------


@pytest.mark.parametrize("scenario", ["self_link", "cycle"])
def test_looping_links_fail_clearly_without_duplicates_or_a_bookmark(tmp_path, scenario):
    with HostileServer(scenario) as server:
        run = run_tap(server.url, tmp_path)
        received = server.received()
    assert_fails_clearly(run, "links cycle", "leads back to a page already read")
    assert len(run.ids) == len(set(run.ids)), f"duplicates emitted: {run.ids}"
    assert run.states == [], "a failed read must not leave a bookmark"
    assert len(received) <= 3, "a loop is stopped at the first repeated page"


# -- 8 and 16. counts that lie ---------------------------------------------------------------


@pytest.mark.parametrize("page2", ["404", "empty", "empty_linked"])
def test_a_bogus_count_ends_with_the_data_there_is(tmp_path, page2):
    with HostileServer("bogus_count", count=3_000_000, page2=page2) as server:
        run = run_tap(server.url, tmp_path)
        received = server.received()
    assert_complete(run, ALL_IDS[:2])
    assert "3000000" in run.stderr and "past its data" in run.stderr
    assert len(received) < 40, f"{len(received)} requests for a 2-customer listing"
    assert run.bookmark == "2024-01-01T02:30:00.000000+00:00"  # customer 2's, no further


def test_a_count_larger_than_the_pages_hold_is_a_warning(tmp_path):
    with HostileServer("count_without_links", count=10, pages=2) as server:
        run = run_tap(server.url, tmp_path)
    assert_complete(run, ALL_IDS[:4])
    assert "said 10 customers" in run.stderr


# -- 9. Retry-After ----------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "wait"), [
    ("-5", "0.0"), ("Wed, 21 Oct 2015 07:28:00 GMT", "0.0"), ("nan", "1.0")])
def test_a_nonsensical_retry_after_is_no_long_wait(tmp_path, value, wait):
    with HostileServer("retry_after", failures=1, retry_after=value) as server:
        started = time.monotonic()
        run = run_tap(server.url, tmp_path)
    assert_complete(run, ALL_IDS)
    assert f"throttled (429): every request waits {wait} s" in run.stderr
    assert time.monotonic() - started < 30


@pytest.mark.parametrize("value", ["86400", "inf", "Infinity", "1e999",
                                   "Fri, 31 Dec 9999 23:59:59 GMT"])
def test_a_huge_retry_after_is_capped_at_300_s(monkeypatch, caplog, value):
    """The client both connectors use, in this process, its sleeps recorded not slept."""
    with HostileServer("retry_after", failures=1, retry_after=value) as server:
        client = PiriodClient(server.url, TOKEN, max_retries=1)
        waits: list[float] = []
        monkeypatch.setattr(client, "_sleep", lambda seconds, why: waits.append(seconds))
        with caplog.at_level(logging.WARNING, logger="piriod"):
            customers = list(client.iter_customers())
    assert [customer["id"] for customer in customers] == ALL_IDS
    assert client.throttle.throttled == 1
    assert max(waits) <= RETRY_AFTER_CAP_SECONDS
    assert max(waits) > RETRY_AFTER_CAP_SECONDS - 30, "the capped wait was planned"
    assert "waiting the cap of 300 s" in caplog.text


# -- 10. the token's own characters -----------------------------------------------------------


@pytest.mark.parametrize("padding", ["\n", "\r\n", " \t"])
def test_a_token_with_surrounding_whitespace_works_and_is_never_printed(tmp_path, padding):
    with HostileServer("plain") as server:
        run = run_tap(server.url, tmp_path, token=TOKEN + padding)
        received = server.received()
    assert_complete(run, ALL_IDS)
    assert {entry["authorization"] for entry in received} == {f"Bearer {TOKEN}"}


@pytest.mark.parametrize("token", [f"tok-{MARKER}\x01x", f"tok\n{MARKER}", f"tok-{MARKER}\x7f",
                                   f"tok-{MARKER}-€"])
def test_a_token_that_cannot_be_a_header_is_refused_at_start_up(tmp_path, token):
    with HostileServer("plain") as server:
        run = run_tap(server.url, tmp_path, token=token)
        received = server.received()
    assert_fails_clearly(run, "auth_token")
    assert received == [], "refused before any request"


# -- 11. a server echoing the token ----------------------------------------------------------

ODD_TOKENS = [f'tok"{MARKER}"q', f"tok\\{MARKER}\\b", f"tok%{MARKER}%41",
              f"tok-ñé-{MARKER}-ü", f'tok"\\%ñ{MARKER}']


@pytest.mark.parametrize("token", ODD_TOKENS)
def test_a_token_echoed_in_a_400_is_redacted(tmp_path, token):
    with HostileServer("echo_token", status=400) as server:
        run = run_tap(server.url, tmp_path, token=token)
    assert_fails_clearly(run, "answered 400", "Bearer ***")
    for form in (token, json.dumps(token)[1:-1], quote(token, safe="")):
        assert form not in run.stderr + run.stdout


@pytest.mark.parametrize(("status", "html"), [(500, False), (400, True), (500, True)])
def test_a_token_echoed_in_a_500_or_an_html_page_is_redacted(tmp_path, status, html):
    token = ODD_TOKENS[-1]
    with HostileServer("echo_token", status=status, html=html) as server:
        run = run_tap(server.url, tmp_path, token=token)
    assert_fails_clearly(run, str(status), "an HTML page" if html else "Bearer ***")
    if status == 500:
        assert "still failing after 2 attempts" in run.stderr


# -- 13 and 12.4. the token stays home -------------------------------------------------------


def test_plain_http_to_another_machine_is_refused_at_start_up(tmp_path):
    run = run_tap("http://example.invalid", tmp_path)
    assert_fails_clearly(run, "api_url", "http://example.invalid", "https")


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_plain_http_to_this_machine_is_allowed(tmp_path, host):
    with HostileServer("plain") as server:
        run = run_tap(f"http://{host}:{server.port}", tmp_path)
    assert_complete(run, ALL_IDS)


def test_a_next_link_to_another_host_name_is_asked_of_api_url(tmp_path):
    with HostileServer("other_host_link", link_host="localhost") as server:
        run = run_tap(server.url, tmp_path)
        received = server.received()
    assert_complete(run, ALL_IDS[:4])
    assert {entry["host"] for entry in received} == {f"127.0.0.1:{server.port}"}


def test_a_next_link_to_another_server_never_reaches_it(tmp_path):
    with HostileServer("plain") as elsewhere, \
            HostileServer("other_host_link", link_base=elsewhere.url) as server:
        run = run_tap(server.url, tmp_path)
        assert elsewhere.received() == [], "the token went to another server"
        assert len(server.received()) == 2 + 1  # two pages, the closing count
    assert_complete(run, ALL_IDS[:4])


# -- 15. settings that cannot work -----------------------------------------------------------


@pytest.mark.parametrize("api_url", ["api.piriod.com", "ftp://api.piriod.com", "https://",
                                     "127.0.0.1:8765"])
def test_an_api_url_without_a_scheme_is_a_config_error_with_an_example(tmp_path, api_url):
    run = run_tap(api_url, tmp_path)
    assert_fails_clearly(run, "api_url", "e.g. https://api.piriod.com")


def test_a_start_date_that_is_not_a_date_is_a_config_error(tmp_path):
    with HostileServer("plain") as server:
        run = run_tap(server.url, tmp_path, start_date="yesterday")
        received = server.received()
    assert_fails_clearly(run, "start_date", "'yesterday'", "e.g. 2024-01-01T00:00:00Z")
    assert received == []


# -- 16. records and pages that break the contract -------------------------------------------


@pytest.mark.parametrize("mode", ["absent", "null", "empty"])
def test_a_customer_without_an_id_fails_naming_the_page(tmp_path, mode):
    with HostileServer("missing_id", id=mode) as server:
        run = run_tap(server.url, tmp_path)
    assert_fails_clearly(run, "page 1 of the listing held a customer without an id")
    assert set(run.ids) <= {"hostile00001"} and run.states == []  # nothing past it


def test_a_page_vanishing_mid_listing_is_named_not_blamed_on_api_url(tmp_path):
    with HostileServer("vanishing_page", vanished=2) as server:
        run = run_tap(server.url, tmp_path)
    assert_fails_clearly(run, "page 2 of the listing vanished")
    assert "check the api_url" not in run.stderr
    assert run.states == []


# -- 17. a prefix the links forget -------------------------------------------------------------


def test_links_without_api_urls_prefix_still_read_every_page(tmp_path):
    with HostileServer("prefix_links", prefix="/api/v1") as server:
        run = run_tap(f"{server.url}/api/v1", tmp_path)
        received = server.received()
    assert_complete(run, ALL_IDS)
    assert all(entry["status"] == 200 for entry in received), received
    assert {entry["path"] for entry in received} == {"/api/v1/customers/"}


# -- bodies that are not JSON ------------------------------------------------------------------


@pytest.mark.parametrize("bad", ["nan", "infinity", "utf8"])
@pytest.mark.parametrize("bad_page", [1, 2])
def test_a_list_page_that_is_not_json_fails_after_retries(tmp_path, bad, bad_page):
    with HostileServer("nan_body", bad=bad, bad_page=bad_page, pages=2) as server:
        run = run_tap(server.url, tmp_path)
        received = list_requests(server)
    assert_fails_clearly(run, "GET /customers/ still failing after 2 attempts", "not JSON")
    for constant in ("NaN", "Infinity"):
        assert constant not in run.stdout
    assert set(run.ids) <= set(ALL_IDS[:2 * (bad_page - 1)]) and run.states == []
    assert len(received) == bad_page + 1, "the bad page is asked once more (max_retries=1)"
