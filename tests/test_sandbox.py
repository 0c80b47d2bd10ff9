"""The sandbox behaves as the documented Piriod API does (and as DRF does where it is silent)."""

from __future__ import annotations

import json
import time
from datetime import datetime
from pathlib import Path

import pytest
import requests

from piriod_sandbox import SandboxProcess
from piriod_sandbox.store import WRITABLE


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


# -- back doors for upcoming tests: deletes, late commits, bulk stamps, broken listings --


def list_all(sandbox, query=""):
    """Every customer the list endpoint serves, following page numbers (100 a page)."""
    found, page = [], 1
    while True:
        body = api(sandbox, "GET", f"/customers/?page_size=100&page={page}&{query}").json()
        found.extend(body["results"])
        if not body["next"]:
            return found
        page += 1


def midpoint(earlier, later):
    """An ISO 8601 instant halfway between two of the API's stamps."""
    first, second = (datetime.fromisoformat(t.replace("Z", "+00:00")) for t in (earlier, later))
    return (first + (second - first) / 2).isoformat().replace("+00:00", "Z")


def test_delete_removes_customers_from_lists_and_retrieve(sandbox):
    doomed = [c["id"] for c in sandbox.customers()[:2]]
    assert sandbox.delete(doomed) == doomed
    listed = {c["id"] for c in list_all(sandbox)}
    assert len(listed) == 248 and not listed & set(doomed)
    assert api(sandbox, "GET", f"/customers/{doomed[0]}/").status_code == 404
    assert api(sandbox, "PATCH", f"/customers/{doomed[1]}/", json={}).status_code == 404
    survivor = sandbox.customers()[0]["id"]
    with pytest.raises(RuntimeError, match="NotFound"):
        sandbox.delete([survivor, "no-such-id"])
    assert sandbox.call("GET", "health")["customers"] == 248, "all or nothing"


def test_late_commit_appears_where_its_stamps_say(sandbox):
    ordered = list_all(sandbox, "ordering=created,id")
    before, after = ordered[99], ordered[100]
    created = midpoint(before["created"], after["created"])
    late = sandbox.insert({"name": "Transacción Larga SpA", "country": "CL"},
                          created=created, updated="2020-01-01T00:00:00Z",
                          customer_id="late00000001")
    assert late["id"] == "late00000001" and late["country"] == {"id": "CL", "name": "Chile"}
    assert late["updated"] == "2020-01-01T00:00:00Z" and late["created"] == created
    assert api(sandbox, "GET", "/customers/late00000001/").json() == late
    reordered = [c["id"] for c in list_all(sandbox, "ordering=created,id")]
    position = reordered.index("late00000001")
    assert reordered[position - 1] == before["id"] and reordered[position + 1] == after["id"]
    at_stamp = list_all(sandbox, "updated__gte=2020-01-01T00:00:00Z")
    assert "late00000001" in {c["id"] for c in at_stamp} and len(at_stamp) == 251
    after_stamp = list_all(sandbox, "updated__gt=2020-01-01T00:00:00Z")
    assert "late00000001" not in {c["id"] for c in after_stamp} and len(after_stamp) == 250
    old_rows = list_all(sandbox, "updated__lte=2020-01-01T00:00:00Z")
    assert [c["id"] for c in old_rows] == ["late00000001"]
    with pytest.raises(RuntimeError, match="already exists"):
        sandbox.insert({"name": "Duplicado SpA"}, customer_id="late00000001")
    with pytest.raises(RuntimeError, match="name"):
        sandbox.insert({"email": "no-name@x.cl"}, updated="2020-01-01T00:00:00Z")


def test_touch_edits_in_place_with_a_chosen_stamp(sandbox):
    customer = sandbox.customers()[5]
    sandbox.touch(ids=[customer["id"]], updated="2021-03-04T05:06:07.000008Z",
                  changes={"name": "Editada SpA"})
    again = api(sandbox, "GET", f"/customers/{customer['id']}/").json()
    assert again["name"] == "Editada SpA" and again["updated"] == "2021-03-04T05:06:07.000008Z"
    assert again["created"] == customer["created"]


def test_stamp_gives_many_customers_one_instant(sandbox):
    first_ten = [c["id"] for c in list_all(sandbox, "ordering=created,id")[:10]]
    instant = "2030-01-01T00:00:00Z"
    stamped = sandbox.stamp(first=10, ordering="created,id", updated=instant,
                            changes={"website": "https://stamped.example"})
    assert stamped == first_ten
    tied = list_all(sandbox, f"updated__gte={instant}&updated__lte={instant}")
    assert {c["id"] for c in tied} == set(first_ten)
    assert {c["website"] for c in tied} == {"https://stamped.example"}
    assert sandbox.stamp(ids=first_ten[:3], updated="2031-01-01T00:00:00Z") == first_ten[:3]
    everyone = sandbox.stamp(updated="2032-01-01T00:00:00Z")
    assert len(everyone) == 250
    assert {c["updated"] for c in list_all(sandbox)} == {"2032-01-01T00:00:00Z"}
    with pytest.raises(RuntimeError, match="NotFound"):
        sandbox.stamp(ids=["no-such-id"])


def test_tie_storm_seeds_many_customers_sharing_one_updated(sandbox):
    started = time.monotonic()
    ids = sandbox.tie_storm(1500, updated="2030-06-01T12:00:00Z")
    assert time.monotonic() - started < 5  # one request, one transaction
    assert len(set(ids)) == 1500
    tied = list_all(sandbox, "updated__gte=2030-06-01T12:00:00Z&ordering=created,id")
    assert [c["id"] for c in tied] == ids
    assert {c["updated"] for c in tied} == {"2030-06-01T12:00:00Z"}
    assert all(c["created"] < c["updated"] for c in tied)
    assert len({c["tax_id"] for c in sandbox.customers()}) == 1750, "unique across seeds"
    shared = sandbox.tie_storm(3, updated="2030-07-01T00:00:00Z", created="2030-07-01T00:00:00Z")
    assert {api(sandbox, "GET", f"/customers/{i}/").json()["created"] for i in shared} == {
        "2030-07-01T00:00:00Z"}


def test_a_broken_listing_fails_from_a_page_on_until_healed(sandbox):
    sandbox.set_faults(retry_after=3)
    plan = sandbox.break_listing("500", from_page=2)
    assert plan["retry_after"] == 3, "other faults are kept"
    assert api(sandbox, "GET", "/customers/?page_size=100").status_code == 200
    for _ in range(3):
        assert api(sandbox, "GET", "/customers/?page_size=100&page=2").status_code == 500
    assert api(sandbox, "GET", "/customers/?page=3&page_size=100").status_code == 500
    one = sandbox.customers()[0]["id"]
    assert api(sandbox, "GET", f"/customers/{one}/").status_code == 200, "lists only"
    sandbox.heal_listing()
    assert api(sandbox, "GET", "/customers/?page_size=100&page=2").status_code == 200


def test_a_broken_listing_can_start_after_some_list_requests(sandbox):
    sandbox.break_listing("drop", after=2)
    assert [api(sandbox, "GET", "/customers/").status_code for _ in range(2)] == [200, 200]
    for _ in range(2):
        with pytest.raises(requests.ConnectionError):
            api(sandbox, "GET", "/customers/")
    assert sandbox.call("GET", "faults")["injected"] == {"drop": 2}
    sandbox.set_faults()
    assert api(sandbox, "GET", "/customers/").status_code == 200


def test_writable_fields_agree_with_the_schema(sandbox):
    schema = json.loads((Path(__file__).parents[1] / "schemas" / "customers.json").read_text())
    assert sorted(schema["x-writable"]) == sorted(WRITABLE)
    body = {"address": "Av. Siempre Viva 742", "country": "CL", "currency": "CLP",
            "email": "todo@campo.cl", "metadata": {"k": "v"}, "name": "Todos Los Campos SpA",
            "phone": "+56 2 2222 2222", "state": "CL-RM", "tax_id": "76.543.210-9",
            "tax_settings": "afecto", "website": "https://campos.example"}
    assert set(body) == set(schema["x-writable"])
    read_only = {"id": "forged", "created": "2000-01-01T00:00:00Z", "contacts": [{"id": "x"}],
                 "aggregations": {"balance": 9}, "sources": [{"id": "y"}]}
    created = api(sandbox, "POST", "/customers/", json={**body, **read_only}).json()
    assert created["country"]["id"] == "CL" and created["state"]["id"] == "CL-RM"
    plain = {key: value for key, value in body.items() if key not in ("country", "state")}
    assert {key: created[key] for key in plain} == plain
    assert created["id"] != "forged" and created["contacts"] == [] and created["sources"] == []
    assert not created["created"].startswith("2000")
