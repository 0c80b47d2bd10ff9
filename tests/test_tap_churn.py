"""A listing that moves under the read (deletes, late inserts mid-order): the tap loses
no update, sends no ACTIVATE_VERSION that would delete a live customer, and emits no
customer version twice in a run because it read the listing again.

The sandbox moves the listing exactly before a given list request (its churn control,
counted by the server), so each test is the same race every time, with 1 and 8 workers.
"""

from __future__ import annotations

from collections import Counter

import pytest
from tap_helpers import TapRun, instant, run_tap
from test_tap_converge import full_table_catalog
from test_tap_incremental import first_catalog

pytestmark = pytest.mark.usefixtures("tap_workers")

PAGE = 10
# Before the 3rd list request: delete 3 of the first 10 customers (creation order) and
# commit 2 late inserts among them. Every later row shifts: with the old reader, rows at
# one page edge were never read (page 1 is read before, the last page after the move).
ONCE = {"at": 3, "deletes": 3, "inserts": 2, "within": PAGE, "rng_seed": 1}
# The same before every list request from the 2nd on: the listing never holds still.
ALWAYS = {"at": 2, "every": 1, "deletes": 2, "inserts": 1, "within": PAGE, "rng_seed": 2}
# Before the 3rd list request: delete one of the first 10 and insert one near the end.
# Every count stays 250 and no row is read twice, yet the row at one page edge is skipped.
BALANCED = {"at": 3, "deletes": 1, "inserts": 1, "within": PAGE, "insert_from": 200,
            "rng_seed": 4}
OLD_BOOKMARK = "2000-01-01T00:00:00.000000+00:00"


def incremental_state() -> dict:
    return {"bookmarks": {"customers": {"replication_key": "updated",
                                        "replication_key_value": OLD_BOOKMARK}}}


def versions(run: TapRun) -> Counter:
    return Counter((record["id"], instant(record["updated"])) for record in run.records)


def assert_no_version_twice(run: TapRun) -> None:
    twice = [version for version, times in versions(run).items() if times > 1]
    assert not twice, f"emitted twice in one run: {twice[:5]}"


def test_incremental_read_under_churn_loses_no_update_with_no_lookback(sandbox, tmp_path):
    """Every live customer updated before the bookmark the run leaves was emitted."""
    sandbox.set_churn(**ONCE)
    run = run_tap(sandbox, tmp_path, state=incremental_state(), page_size=PAGE,
                  lookback_window=0)
    assert run.returncode == 0, run.stderr
    assert sandbox.churn()["applied"] == 1
    bookmark = instant(run.bookmark)
    behind = {c["id"] for c in sandbox.customers() if instant(c["updated"]) <= bookmark}
    missed = behind - set(run.ids)
    assert not missed, f"lost for good (the bookmark moved past them): {sorted(missed)}"
    assert_no_version_twice(run)
    assert "read 2 times" in run.stderr


def test_incremental_read_that_never_settles_keeps_the_bookmark(sandbox, tmp_path):
    """Emit what was read, keep the old bookmark, say why; the next quiet run catches up."""
    sandbox.set_churn(**ALWAYS)
    run = run_tap(sandbox, tmp_path, state=incremental_state(), page_size=PAGE,
                  lookback_window=0)
    assert run.returncode == 0, run.stderr
    assert run.bookmark == OLD_BOOKMARK
    assert "kept moving" in run.stderr and "bookmark stays" in run.stderr
    assert_no_version_twice(run)
    sandbox.set_churn()
    after = run_tap(sandbox, tmp_path, state=run.states[-1], page_size=PAGE,
                    lookback_window=0)
    assert after.returncode == 0, after.stderr
    assert after.bookmark > OLD_BOOKMARK
    # What the first run delivered is not sent again (its digests are in the state).
    assert {c["id"] for c in sandbox.customers()} <= set(run.ids) | set(after.ids)
    assert not set(run.ids) & set(after.ids)


def full_table(sandbox, tmp_path, churn: dict) -> TapRun:
    catalog = full_table_catalog(first_catalog(sandbox, tmp_path))
    sandbox.set_churn(**churn)
    run = run_tap(sandbox, tmp_path, catalog=catalog, page_size=PAGE)
    assert run.returncode == 0, run.stderr
    return run


def test_full_table_read_under_churn_activates_only_a_complete_read(sandbox, tmp_path):
    """No live customer is missing from a read that sends ACTIVATE_VERSION."""
    run = full_table(sandbox, tmp_path, ONCE)
    assert [m["type"] for m in run.messages].count("ACTIVATE_VERSION") == 1
    live = {c["id"] for c in sandbox.customers()}
    missing = live - set(run.ids)
    assert not missing, f"ACTIVATE_VERSION would delete live customers {sorted(missing)}"
    assert_no_version_twice(run)


def test_full_table_read_that_never_settles_deletes_nothing(sandbox, tmp_path):
    run = full_table(sandbox, tmp_path, ALWAYS)
    assert "ACTIVATE_VERSION" not in {m["type"] for m in run.messages}
    assert "kept moving" in run.stderr and "no ACTIVATE_VERSION" in run.stderr
    assert sandbox.churn()["applied"] > 10
    assert_no_version_twice(run)


def test_a_move_no_count_shows_deletes_only_what_piriod_says_is_gone(sandbox, tmp_path):
    """The previous complete read's ids that this read lacks are fetched by id first."""
    first = full_table(sandbox, tmp_path, {})
    assert "ACTIVATE_VERSION" in {m["type"] for m in first.messages}
    catalog = full_table_catalog(first_catalog(sandbox, tmp_path))
    sandbox.set_churn(**BALANCED)
    run = run_tap(sandbox, tmp_path, catalog=catalog, state=first.states[-1], page_size=PAGE)
    assert run.returncode == 0, run.stderr
    assert [m["type"] for m in run.messages].count("ACTIVATE_VERSION") == 1
    live = {c["id"] for c in sandbox.customers()}
    missing = live - set(run.ids)
    assert not missing, f"ACTIVATE_VERSION would delete live customers {sorted(missing)}"
    assert "still exist and are emitted" in run.stderr
    assert_no_version_twice(run)
