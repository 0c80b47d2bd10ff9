"""The hostile server does what each scenario claims (checked with plain ``requests``)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from hostile_server import SCENARIOS, HostileServer

AUTH = {"Authorization": "Bearer s3cret-token"}


def get(url, **kwargs):
    return requests.get(url, headers=AUTH, timeout=10, **kwargs)


def test_plain_pages_and_the_request_log():
    with HostileServer("plain") as server:
        first = get(f"{server.url}/customers/?ordering=created").json()
        assert first["count"] == 6 and len(first["results"]) == 2
        assert first["next"] == f"{server.url}/customers/?ordering=created&page=2"
        customer = first["results"][0]
        assert customer["id"] == "hostile00001" and customer["country"] == {"id": "CL",
                                                                           "name": "Chile"}
        assert customer["created"].endswith("Z") and customer["metadata"] == {}
        assert get(first["next"]).json()["results"][0]["id"] == "hostile00003"
        assert get(f"{server.url}/customers/?page=4").status_code == 404
        requests.post(f"{server.url}/customers/", json={"name": "X"}, timeout=10)
        log = server.received()
        assert [entry["method"] for entry in log] == ["GET", "GET", "GET", "POST"]
        assert log[0]["authorization"] == "Bearer s3cret-token" and log[0]["has_authorization"]
        assert log[0]["params"] == {"ordering": ["created"]} and log[0]["status"] == 200
        assert log[3]["authorization"] is None and json.loads(log[3]["body"]) == {"name": "X"}
        assert len(server.received("POST")) == 1
        server.clear()
        assert server.received() == []


def test_self_link_points_at_itself():
    with HostileServer("self_link") as server:
        url = f"{server.url}/customers/?ordering=created"
        assert get(url).json()["next"] == url


def test_cycle_returns_to_page_one():
    with HostileServer("cycle") as server:
        first = get(f"{server.url}/customers/").json()
        second = get(first["next"]).json()
        assert first["next"] == f"{server.url}/customers/?page=2"
        assert second["next"] == f"{server.url}/customers/"
        assert second["results"] != first["results"]


@pytest.mark.parametrize(("page2", "status", "has_next"), [
    ("404", 404, None), ("empty", 200, False), ("empty_linked", 200, True)])
def test_bogus_count(page2, status, has_next):
    with HostileServer("bogus_count", page2=page2) as server:
        first = get(f"{server.url}/customers/").json()
        assert first["count"] == 3_000_000 and len(first["results"]) == 2
        second = get(first["next"])
        assert second.status_code == status
        if status == 200:
            assert second.json()["results"] == [] and bool(second.json()["next"]) is has_next


def test_count_without_links():
    with HostileServer("count_without_links") as server:
        pages = [get(f"{server.url}/customers/?page={n}").json() for n in (1, 2, 3)]
        assert all(set(page) == {"count", "results"} and page["count"] == 10 for page in pages)
        assert [len(page["results"]) for page in pages] == [2, 2, 0]


@pytest.mark.parametrize("value", ["86400", "inf", "nan", "-5", "Wed, 21 Oct 2015 07:28:00 GMT"])
def test_retry_after(value):
    with HostileServer("retry_after", failures=2, retry_after=value) as server:
        answers = [get(f"{server.url}/customers/") for _ in range(3)]
        assert [a.status_code for a in answers] == [429, 429, 200]
        assert answers[0].headers["Retry-After"] == value
        assert get(f"{server.url}/customers/hostile00001/").status_code == 200


def test_retry_after_on_writes_and_without_header():
    with HostileServer("retry_after", only_lists=False, retry_after=None) as server:
        throttled = requests.post(f"{server.url}/customers/", json={"name": "X"}, timeout=10)
        assert throttled.status_code == 429 and "Retry-After" not in throttled.headers
        again = requests.post(f"{server.url}/customers/", json={"name": "X"}, timeout=10)
        assert again.status_code == 201


@pytest.mark.parametrize(("status", "html"), [(400, False), (500, False), (500, True)])
def test_echo_token(status, html):
    with HostileServer("echo_token", status=status, html=html) as server:
        answer = get(f"{server.url}/customers/")
        assert answer.status_code == status and "Bearer s3cret-token" in answer.text
        patched = requests.patch(f"{server.url}/customers/x/", headers=AUTH, json={}, timeout=10)
        assert "Bearer s3cret-token" in patched.text


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_redirect_post(status):
    with HostileServer("redirect_post", status=status) as server:
        answer = requests.post(f"{server.url}/customers/", json={"name": "X"},
                               allow_redirects=False, timeout=10)
        assert answer.status_code == status
        location = answer.headers["Location"]
        assert location == f"{server.url}/customers/hostile00042/"
        assert get(location).json()["id"] == "hostile00042"
        assert len(server.received("POST")) == 1


def test_redirect_post_to_another_server():
    with HostileServer("plain") as other, HostileServer(
            "redirect_post", location=f"{other.url}/customers/elsewhere01/") as server:
        answer = requests.post(f"{server.url}/customers/", json={"name": "X"}, timeout=10)
        assert answer.json()["id"] == "elsewhere01"  # requests followed with a GET
        assert [e["method"] for e in other.received()] == ["GET"]


def test_prefix_links():
    with HostileServer("prefix_links") as server:
        first = get(f"{server.url}/api/v1/customers/").json()
        assert first["next"] == f"{server.url}/customers/?page=2"
        assert get(first["next"]).status_code == 404
        assert get(f"{server.url}/api/v1/customers/?page=2").status_code == 200
        assert get(f"{server.url}/api/v1/customers/hostile00001/").status_code == 200


def test_other_host_link_by_name_and_to_a_second_server():
    with HostileServer("other_host_link") as server:
        first = get(f"{server.url}/customers/").json()
        assert first["next"] == f"http://localhost:{server.port}/customers/?page=2"
        requests.get(first["next"], timeout=10)  # a careful client: no token elsewhere
        last = server.received()[-1]
        assert last["host"] == f"localhost:{server.port}" and not last["has_authorization"]
    with HostileServer("plain") as other, HostileServer("other_host_link",
                                                         link_base=other.url) as server:
        assert get(f"{server.url}/customers/").json()["next"] == f"{other.url}/customers/?page=2"


@pytest.mark.parametrize(("bad", "marker"), [("nan", b"NaN"), ("infinity", b"Infinity"),
                                             ("utf8", b"\xff\xfe")])
def test_nan_body(bad, marker):
    with HostileServer("nan_body", bad=bad) as server:
        answer = get(f"{server.url}/customers/")
        assert answer.status_code == 200 and marker in answer.content
        with pytest.raises(ValueError):
            json.loads(answer.content, parse_constant=_refuse)
        assert get(f"{server.url}/customers/?page=2").json()["next"] is None


def _refuse(name):
    raise ValueError(name)


@pytest.mark.parametrize(("mode", "value"), [("absent", "gone"), ("null", None), ("empty", "")])
def test_missing_id(mode, value):
    with HostileServer("missing_id", id=mode) as server:
        results = get(f"{server.url}/customers/").json()["results"]
        assert len(results) == 3 and results[1].get("id", "gone") == value
        assert results[0]["id"] and results[2]["id"]


def test_vanishing_page():
    with HostileServer("vanishing_page") as server:
        first = get(f"{server.url}/customers/").json()
        assert first["count"] == 6 and first["next"].endswith("page=2")
        assert get(first["next"]).status_code == 404
        assert get(f"{server.url}/customers/?page=3").status_code == 200


def test_every_scenario_is_tested_here():
    source = Path(__file__).read_text()
    assert all(f'HostileServer("{name}"' in source for name in SCENARIOS)


def test_unknown_options_fail_the_start():
    with pytest.raises(RuntimeError, match="did not start"):
        HostileServer("cycle", bogus=1).start()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_stops_on_sigterm_and_sigint(sig):
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.hostile_server", "--scenario", "plain", "--port", "0"],
        stdout=subprocess.PIPE, text=True, cwd=Path(__file__).parents[1])
    try:
        assert "listening on http://127.0.0.1:" in process.stdout.readline()
        process.send_signal(sig)
        assert process.wait(timeout=5) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
