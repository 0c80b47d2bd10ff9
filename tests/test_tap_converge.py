"""A replica that converges: late commits arrive, ties are not re-sent, deletes are signalled."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from tap_helpers import instant, run_tap

from tap_piriod.streams import utc_text


def late_customer(n: int) -> dict:
    return {"name": f"Importado {n} SpA", "country": "CL", "email": f"import{n}@x.example"}


def stamp_before(bookmark: str, seconds: float) -> str:
    return utc_text(instant(bookmark) - timedelta(seconds=seconds))


def test_late_commits_inside_the_window_arrive_and_beyond_it_do_not(sandbox, tmp_path):
    first = run_tap(sandbox, tmp_path)
    bookmark = first.bookmark
    # Rows committed after the run, stamped before its bookmark (a long import transaction).
    inside = [sandbox.insert(late_customer(n), updated=stamp_before(bookmark, seconds))["id"]
              for n, seconds in enumerate((20, 240))]
    beyond = sandbox.insert(late_customer(9), updated=stamp_before(bookmark, 600))["id"]

    second = run_tap(sandbox, tmp_path, state=first.states[-1])
    assert second.returncode == 0, second.stderr
    assert set(second.ids) == set(inside)  # nothing else: the window's others were delivered
    assert beyond not in second.ids  # older than lookback_window: documented limit
    assert second.bookmark == bookmark  # late commits never move the bookmark back

    third = run_tap(sandbox, tmp_path, state=second.states[-1])
    assert third.ids == []  # and they are delivered once


def test_without_lookback_late_commits_are_lost(sandbox, tmp_path):
    """The failure the window exists for (a test that the window is what saves them)."""
    first = run_tap(sandbox, tmp_path, lookback_window=0)
    late = sandbox.insert(late_customer(1), updated=stamp_before(first.bookmark, 20))["id"]
    second = run_tap(sandbox, tmp_path, state=first.states[-1], lookback_window=0)
    assert late not in second.ids


def a_minute_ago() -> str:
    """An instant newer than every seeded customer, older than the run (not capped)."""
    return utc_text(datetime.now(timezone.utc) - timedelta(minutes=1))


def test_a_tie_storm_is_delivered_once(sandbox, tmp_path):
    tie = a_minute_ago()
    storm = set(sandbox.tie_storm(1500, updated=tie))
    first = run_tap(sandbox, tmp_path)
    assert storm <= set(first.ids)
    assert instant(first.bookmark) == instant(tie)
    state = first.states[-1]
    for _ in range(2):  # run after run, nothing changed: nothing emitted
        again = run_tap(sandbox, tmp_path, state=state)
        assert again.returncode == 0, again.stderr
        assert again.ids == []
        state = again.states[-1]
    edited = sandbox.touch(ids=[sorted(storm)[7]], changes={"name": "Editada SpA"})
    after_edit = run_tap(sandbox, tmp_path, state=state)
    assert after_edit.ids == edited
    assert run_tap(sandbox, tmp_path, state=after_edit.states[-1]).ids == []


@pytest.mark.parametrize("state", [
    {},  # empty
    {"bookmarks": {}},
    {"bookmarks": {"customers": {"replication_key": "updated",
                                 "replication_key_value": "2026-08-01T00:00:00+00:00"}}},
    {"bookmarks": {"customers": {"replication_key": "updated",
                                 "replication_key_value": "2026-08-01T00:00:00+00:00",
                                 "delivered": {"digests": "not base64!!"}}}},
])
def test_old_empty_and_damaged_states_still_work(sandbox, tmp_path, state):
    """A state written by the previous release is a plain bookmark: read as one."""
    sandbox.touch(count=3, updated="2026-08-01T00:00:10Z", rng_seed=4)
    run = run_tap(sandbox, tmp_path, state=state)
    assert run.returncode == 0, run.stderr
    expected = {c["id"] for c in sandbox.customers()
                if not state.get("bookmarks") or
                instant(c["updated"]) >= instant("2026-08-01T00:00:00Z") - timedelta(minutes=5)}
    assert set(run.ids) == expected
    assert "delivered" in run.states[-1]["bookmarks"]["customers"]


def test_the_state_stays_small(sandbox, tmp_path):
    sandbox.tie_storm(1500, updated=a_minute_ago())
    run = run_tap(sandbox, tmp_path)
    delivered = run.states[-1]["bookmarks"]["customers"]["delivered"]
    assert delivered["count"] >= 1500
    assert len(delivered["digests"]) <= 12 * delivered["count"]  # 8 bytes each, base64


def full_table_catalog(run_discover) -> dict:
    catalog = run_discover
    for entry in catalog["streams"]:
        entry["replication_method"] = "FULL_TABLE"
        for item in entry["metadata"]:
            if item["breadcrumb"] == []:
                item["metadata"]["forced-replication-method"] = "FULL_TABLE"
                item["metadata"]["selected"] = True
    return catalog


def test_full_table_read_activates_its_version_after_the_last_record(sandbox, tmp_path):
    from test_tap_incremental import first_catalog

    catalog = full_table_catalog(first_catalog(sandbox, tmp_path))
    run = run_tap(sandbox, tmp_path, catalog=catalog)
    assert run.returncode == 0, run.stderr
    kinds = [m["type"] for m in run.messages]
    activate = [i for i, kind in enumerate(kinds) if kind == "ACTIVATE_VERSION"]
    last_record = max(i for i, kind in enumerate(kinds) if kind == "RECORD")
    assert len(activate) == 1 and activate[0] > last_record
    version = run.messages[activate[0]]["version"]
    assert {m["version"] for m in run.messages if m["type"] == "RECORD"} == {version}
    assert len(run.ids) == 250


def test_a_full_table_read_that_fails_halfway_activates_nothing(sandbox, tmp_path):
    from test_tap_incremental import first_catalog

    catalog = full_table_catalog(first_catalog(sandbox, tmp_path))
    sandbox.break_listing("500", from_page=3)
    run = run_tap(sandbox, tmp_path, catalog=catalog, page_size=50, max_retries=1,
                  max_workers=1)
    assert run.returncode != 0
    assert run.ids, "the run read some pages before failing"
    assert "ACTIVATE_VERSION" not in {m["type"] for m in run.messages}
    assert "page 3 of the listing: GET /customers/ still failing after 2 attempts" in run.stderr


def test_activate_version_can_be_turned_off(sandbox, tmp_path):
    from test_tap_incremental import first_catalog

    catalog = full_table_catalog(first_catalog(sandbox, tmp_path))
    run = run_tap(sandbox, tmp_path, catalog=catalog, emit_activate_version_messages=False)
    assert run.returncode == 0, run.stderr
    assert "ACTIVATE_VERSION" not in {m["type"] for m in run.messages}
    assert len(run.ids) == 250
