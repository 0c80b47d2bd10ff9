"""Incremental correctness of tap-piriod: every change arrives, unchanged customers don't."""

from __future__ import annotations

import jsonschema
import pytest
import requests
from tap_helpers import instant, run_tap

from piriod_sandbox import SandboxProcess

# Correct with pages read one at a time and eight at a time.
pytestmark = pytest.mark.usefixtures("tap_workers")


def newest_instant(customers: list[dict]) -> object:
    return max(instant(c["updated"]) for c in customers)


def create_customers(sandbox: SandboxProcess, count: int) -> list[str]:
    """Create customers through the public API, as Piriod's own app would."""
    ids = []
    for n in range(count):
        response = requests.post(
            f"{sandbox.url}/customers/",
            json={"name": f"Nuevo Cliente {n} SpA", "country": "CL", "email": f"n{n}@x.example"},
            headers={"Authorization": f"Bearer {sandbox.token}"}, timeout=10)
        response.raise_for_status()
        ids.append(response.json()["id"])
    return ids


def assert_changes_arrive(sandbox: SandboxProcess, tmp_path, **config) -> None:
    """First run, then changes at the bookmark instant, later, and new; then a second run."""
    first = run_tap(sandbox, tmp_path, **config)
    assert first.returncode == 0, first.stderr
    everyone = sandbox.customers()
    assert sorted(first.ids) == sorted(c["id"] for c in everyone)
    assert instant(first.bookmark) == newest_instant(everyone)

    # Customers that already sat at the bookmark instant may be re-emitted (ties): no more.
    tied = {c["id"] for c in everyone if instant(c["updated"]) == instant(first.bookmark)}
    at_bookmark = set(sandbox.touch(count=5, updated=first.bookmark, rng_seed=1))
    later = set(sandbox.touch(count=10, rng_seed=2))
    created = set(create_customers(sandbox, 3))
    changed = at_bookmark | later | created

    second = run_tap(sandbox, tmp_path, state=first.states[-1], **config)
    assert second.returncode == 0, second.stderr
    emitted = set(second.ids)
    assert changed <= emitted, f"missed {changed - emitted}"
    assert emitted <= changed | tied, f"re-emitted unchanged {emitted - changed - tied}"
    # The bookmark moves on, but never past the newest change nor the run's start (changes
    # made within a second of the run are re-read next time, by design).
    assert instant(first.bookmark) < instant(second.bookmark)
    assert instant(second.bookmark) <= newest_instant(sandbox.customers())


def test_first_run_emits_everyone_valid_against_its_schema(sandbox, tmp_path):
    run = run_tap(sandbox, tmp_path)
    assert run.returncode == 0, run.stderr
    assert len(run.ids) == len(set(run.ids)) == 250
    validator = jsonschema.Draft7Validator(run.schema, format_checker=jsonschema.FormatChecker())
    for record in run.records:
        validator.validate(record)
    chilean = next(r for r in run.records if r["country"] and r["country"]["id"] == "CL")
    assert chilean["country"] == {"id": "CL", "name": "Chile"}


def test_incremental_run_brings_exactly_the_changes(sandbox, tmp_path):
    assert_changes_arrive(sandbox, tmp_path, page_size=50)


def test_server_ignoring_ordering_and_filters(sandbox, tmp_path):
    sandbox.set_faults(ignore_params=True)
    assert_changes_arrive(sandbox, tmp_path, page_size=20)


def test_server_refusing_ordering_and_filters_with_400(sandbox, tmp_path):
    sandbox.set_faults(reject_params=["ordering", "updated__gte"])
    assert_changes_arrive(sandbox, tmp_path, page_size=50)


def test_server_counting_pages_without_linking_them(sandbox, tmp_path):
    """No ``next`` links, only ``count``: later pages are asked for by number."""
    sandbox.set_faults(no_links=True)
    assert_changes_arrive(sandbox, tmp_path, page_size=40)


def test_mixed_utc_offsets_compare_instants_not_strings(sandbox, tmp_path):
    sandbox.set_faults(mixed_offsets=True)
    headers = {"Authorization": f"Bearer {sandbox.token}"}
    page = requests.get(f"{sandbox.url}/customers/?page_size=100", headers=headers,
                        timeout=10).json()["results"]
    west = next(c["id"] for c in page if c["updated"].endswith("-09:30"))
    east = next(c["id"] for c in page if c["updated"].endswith("+14:00"))
    # The newest customer is shown at -09:30, an hour-older one at +14:00: as text, the
    # older one looks 22 hours newer.
    sandbox.touch(ids=[c["id"] for c in sandbox.customers() if c["id"] not in (west, east)],
                  updated="2025-06-01T00:00:00Z")
    sandbox.touch(ids=[east], updated="2026-06-01T11:00:00Z")
    sandbox.touch(ids=[west], updated="2026-06-01T12:00:00Z")
    served = {cid: requests.get(f"{sandbox.url}/customers/{cid}/", headers=headers,
                                timeout=10).json()["updated"] for cid in (west, east)}
    assert served[east] > served[west], "fixture must make string order differ"

    run = run_tap(sandbox, tmp_path)
    assert all(r["updated"].endswith("+00:00") for r in run.records)
    assert instant(run.bookmark) == instant("2026-06-01T12:00:00Z")
    assert_changes_arrive(sandbox, tmp_path, page_size=30)


def test_ties_across_a_page_boundary(sandbox, tmp_path):
    tie = "2026-01-02T03:04:05.678901Z"
    tied = set(sandbox.touch(count=35, updated=tie, rng_seed=3))
    # Everything else is older than the tie, so the tie is the bookmark instant.
    others = [c["id"] for c in sandbox.customers() if c["id"] not in tied]
    sandbox.touch(ids=others, updated="2025-06-01T00:00:00Z")
    first = run_tap(sandbox, tmp_path, page_size=10)
    assert sorted(first.ids) == sorted(tied | set(others))
    assert instant(first.bookmark) == instant(tie)

    # Writes that land in the same microsecond after the run must still be picked up.
    late = set(sandbox.touch(ids=others[:12], updated=tie))
    second = run_tap(sandbox, tmp_path, state=first.states[-1], page_size=10)
    # The tied customers were delivered by the first run (the state remembers them).
    assert set(second.ids) == late


def test_start_date_limits_the_first_run(sandbox, tmp_path):
    start = "2026-01-01T00:00:00+00:00"
    expected = {c["id"] for c in sandbox.customers() if instant(c["updated"]) >= instant(start)}
    assert 0 < len(expected) < 250
    run = run_tap(sandbox, tmp_path, start_date=start)
    assert set(run.ids) == expected


def test_country_filter(sandbox, tmp_path):
    expected = {c["id"] for c in sandbox.customers() if c["country"]["name"] == "Chile"}
    run = run_tap(sandbox, tmp_path, country_name="Chile")
    assert set(run.ids) == expected and expected


@pytest.mark.parametrize("method", ["FULL_TABLE"])
def test_full_table_via_catalog_ignores_the_bookmark(sandbox, tmp_path, method):
    first = run_tap(sandbox, tmp_path)
    catalog = first_catalog(sandbox, tmp_path)
    for entry in catalog["streams"]:
        entry["replication_method"] = method
        for item in entry["metadata"]:
            if item["breadcrumb"] == []:
                item["metadata"]["forced-replication-method"] = method
                item["metadata"]["selected"] = True
    again = run_tap(sandbox, tmp_path, state=first.states[-1], catalog=catalog)
    assert again.returncode == 0, again.stderr
    assert len(again.ids) == 250


def first_catalog(sandbox, tmp_path) -> dict:
    import json
    import subprocess

    from tap_helpers import TAP, tap_config, write_json

    out = subprocess.run([*TAP, "--config", write_json(tmp_path, "c.json", tap_config(sandbox)),
                          "--discover"], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)
