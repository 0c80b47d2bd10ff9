"""The sandbox behaves as the documented Piriod API does (and as DRF does where it is silent)."""

from __future__ import annotations

import time

import pytest
import requests

from piriod_sandbox import SandboxProcess


def api(sandbox, method, path, token=None, **kwargs):
    headers = {"Authorization": f"Bearer {token or sandbox.token}"}
    return requests.request(method, f"{sandbox.url}{path}", headers=headers, timeout=10,
                            **kwargs)


def test_starts_fast_on_an_ephemeral_port():
    started = time.monotonic()
    with SandboxProcess(10) as server:
        assert server.url.startswith("http://127.0.0.1:")
        assert server.call("GET", "health") == {"ok": True, "customers": 10}
    assert time.monotonic() - started < 10  # generous: "well under a second" on a quiet box


def test_auth_is_required(sandbox):
    missing = requests.get(f"{sandbox.url}/customers/", timeout=10)
    assert missing.status_code == 401
    assert missing.json() == {"detail": "Authentication credentials were not provided."}
    assert api(sandbox, "GET", "/customers/", token="wrong").json() == {"detail": "Invalid token."}


def test_list_is_paginated_drf_style(sandbox):
    first = api(sandbox, "GET", "/customers/?page_size=100").json()
    assert first["count"] == 250 and len(first["results"]) == 100 and first["previous"] is None
    last = api(sandbox, "GET", "/customers/?page_size=100&page=3").json()
    assert len(last["results"]) == 50 and last["next"] is None
    capped = api(sandbox, "GET", "/customers/?page_size=1000").json()
    assert len(capped["results"]) == 100
    assert api(sandbox, "GET", "/customers/?page=99").status_code == 404


def test_ordering_and_filters(sandbox):
    page = api(sandbox, "GET", "/customers/?ordering=-updated&page_size=100").json()["results"]
    assert [c["updated"] for c in page] == sorted((c["updated"] for c in page), reverse=True)
    cutoff = page[10]["updated"]
    newer = api(sandbox, "GET", f"/customers/?updated__gte={cutoff}&page_size=100").json()
    assert newer["count"] == 11
    chile = api(sandbox, "GET", "/customers/?country__name=Chile").json()
    assert chile["count"] > 0
    assert all(c["country"]["id"] == "CL" for c in chile["results"])
    bad = api(sandbox, "GET", "/customers/?updated__gte=yesterday")
    assert bad.status_code == 400 and "updated__gte" in bad.json()


def test_write_codes_read_objects_and_server_timestamps(sandbox):
    created = api(sandbox, "POST", "/customers/", json={
        "name": "Fábrica Austral SpA", "country": "CL", "state": "CL-RM", "email": "a@b.cl",
        "id": "forged", "created": "2000-01-01T00:00:00Z", "aggregations": {"balance": 1}})
    assert created.status_code == 201
    body = created.json()
    assert body["country"] == {"id": "CL", "name": "Chile"}
    assert body["state"]["id"] == "CL-RM" and body["id"] != "forged"
    assert not body["created"].startswith("2000") and body["aggregations"]["balance"] == 0
    patched = api(sandbox, "PATCH", f"/customers/{body['id']}/", json={"phone": "+56 2 1"})
    assert patched.json()["phone"] == "+56 2 1" and patched.json()["updated"] > body["updated"]
    assert api(sandbox, "GET", f"/customers/{body['id']}/").json()["phone"] == "+56 2 1"
    assert api(sandbox, "GET", "/customers/nope/").status_code == 404
    assert api(sandbox, "PATCH", "/customers/nope/", json={}).status_code == 404


@pytest.mark.parametrize(("body", "field"), [
    ({"name": "X", "email": "not-an-email"}, "email"),
    ({"name": "X", "country": "ZZ"}, "country"),
    ({"name": "X", "country": {"id": "CL"}}, "country"),
    ({"name": "X", "country": "AR", "state": "CL-RM"}, "state"),
    ({"email": "a@b.cl"}, "name"),
])
def test_invalid_writes_answer_400_by_field(sandbox, body, field):
    response = api(sandbox, "POST", "/customers/", json=body)
    assert response.status_code == 400
    assert isinstance(response.json()[field], list)


def test_faults_are_injected_as_planned(sandbox):
    sandbox.set_faults(retry_after=3, script=[{"nth": 1, "fault": "429"},
                                              {"nth": 2, "fault": "503_html"},
                                              {"nth": 1, "fault": "drop_after",
                                               "method": "POST"}])
    limited = api(sandbox, "GET", "/customers/")
    assert limited.status_code == 429 and limited.headers["Retry-After"] == "3"
    html = api(sandbox, "GET", "/customers/")
    assert html.status_code == 503 and html.text.startswith("<!DOCTYPE html>")
    with pytest.raises(requests.ConnectionError):
        api(sandbox, "POST", "/customers/", json={"name": "Committed SpA"})
    assert sandbox.stats()["creates"] == 1, "drop_after commits the write before dropping"
    assert api(sandbox, "GET", "/customers/").status_code == 200


def test_rate_limit_answers_429(sandbox):
    sandbox.set_faults(rate_limit=5)
    statuses = [api(sandbox, "GET", "/customers/?page_size=1").status_code for _ in range(12)]
    assert statuses.count(429) >= 5 and statuses[0] == 200
