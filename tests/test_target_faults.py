"""Faults mid-load (429, 5xx, timeouts, dropped connections) end complete, with no duplicates."""

from __future__ import annotations

import pytest
from target_helpers import (
    assert_exactly_once,
    messages_for,
    new_customer,
    run_target,
)

N = 12
TAX_IDS = [f"77.{n:03d}.000-K" for n in range(1, N + 1)]


def load(count: int = N, **overrides: object) -> list[dict]:
    return messages_for([new_customer(n, **overrides) for n in range(1, count + 1)])


def assert_complete(sandbox, run, created: int = N) -> None:
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.count("created") == created and run.count("rejected") == 0
    assert len(sandbox.customers()) == 250 + created
    assert_exactly_once(sandbox, "tax_id", TAX_IDS[:created])


@pytest.mark.parametrize("fault", ["drop_after", "drop", "500", "502", "503_html",
                                   "malformed", "429"])
def test_post_faults_do_not_duplicate(sandbox, tmp_path, fault):
    sandbox.set_faults(retry_after=0, script=[
        {"nth": n, "fault": fault, "method": "POST"} for n in (1, 4, 5, 9)])
    run = run_target(sandbox, tmp_path, load(), match_field="tax_id")
    assert_complete(sandbox, run)
    if fault == "drop_after":  # four POSTs were committed without an answer
        assert sandbox.stats()["creates"] == N


@pytest.mark.parametrize("fault", ["drop_after", "drop", "503", "malformed", "429"])
def test_patch_and_index_read_faults_are_retried(sandbox, tmp_path, fault):
    customers = sandbox.customers()[:N]
    records = [{**c, "phone": f"+56 9 {i}"} for i, c in enumerate(customers)]
    sandbox.set_faults(retry_after=0, script=[
        {"nth": 1, "fault": fault, "method": "GET"}, {"nth": 2, "fault": fault, "method": "GET"},
        *({"nth": n, "fault": fault, "method": "PATCH"} for n in (1, 3, 7))])
    run = run_target(sandbox, tmp_path, messages_for(records))
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.count("updated") == N
    after = {c["id"]: c["phone"] for c in sandbox.customers()}
    assert [after[c["id"]] for c in customers] == [f"+56 9 {i}" for i in range(N)]


def test_a_post_that_times_out_but_commits_later_is_not_posted_twice(sandbox, tmp_path):
    sandbox.set_faults(slow_ms=1500, script=[{"nth": 2, "fault": "slow", "method": "POST"}])
    run = run_target(sandbox, tmp_path, load(4), match_field="tax_id", request_timeout=1)
    assert_complete(sandbox, run, created=4)
    assert sandbox.stats()["creates"] == 4


@pytest.mark.parametrize("match_field", ["tax_id", "email", "metadata.erp_id"])
def test_unknown_outcome_lookup_when_the_server_ignores_filters(sandbox, tmp_path,
                                                                match_field):
    """The filter is undocumented: a server returning everything must not fool the lookup."""
    sandbox.set_faults(ignore_params=True, script=[
        {"nth": n, "fault": "drop_after", "method": "POST"} for n in (2, 3, 6)])
    run = run_target(sandbox, tmp_path, load(), match_field=match_field)
    assert_complete(sandbox, run)
    assert sandbox.stats()["creates"] == N


def test_random_faults_everywhere_end_in_a_complete_load(sandbox, tmp_path):
    count = 60
    seeded = sandbox.customers()[:40]
    records = [new_customer(n) for n in range(1, count + 1)]
    records += [{**c, "address": f"Calle {i}"} for i, c in enumerate(seeded)]
    sandbox.set_faults(seed=11, retry_after=0, random={
        "429": 0.05, "500": 0.04, "503_html": 0.03, "drop": 0.04, "drop_after": 0.05,
        "malformed": 0.04})
    run = run_target(sandbox, tmp_path, messages_for(records), match_field="tax_id",
                     max_workers=6, max_retries=8)
    assert run.returncode == 0, run.stderr[-3000:]
    assert (run.count("created"), run.count("updated")) == (count, 40)
    assert len(sandbox.customers()) == 250 + count
    assert_exactly_once(sandbox, "tax_id", [f"77.{n:03d}.000-K" for n in range(1, count + 1)])
    injected = sandbox.call("GET", "faults")["injected"]
    assert injected.get("drop_after", 0) > 0 and injected.get("429", 0) > 0

    sandbox.set_faults()
    sandbox.reset_stats()
    again = run_target(sandbox, tmp_path, messages_for(records), match_field="tax_id")
    assert again.count("unchanged") == count + 40 and sandbox.stats()["writes"] == 0


def test_rate_limited_load_paces_itself_and_completes(sandbox, tmp_path):
    count = 40
    sandbox.set_faults(rate_limit=20, retry_after=1)
    run = run_target(sandbox, tmp_path, load(count), match_field="tax_id", max_workers=4)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.count("created") == count and sandbox.stats()["creates"] == count
    # Pacing after the first 429s: far fewer throttled answers than requests.
    stats = sandbox.stats()
    assert stats["by_status"].get("429", 0) < count


def test_a_write_that_keeps_failing_fails_the_run_and_a_rerun_completes(sandbox, tmp_path):
    sandbox.set_faults(random={"503": 1.0}, random_methods=["POST"])
    failed = run_target(sandbox, tmp_path, load(), match_field="tax_id", max_retries=2)
    assert failed.returncode != 0
    assert "POST /customers/" in failed.stderr and "attempts" in failed.stderr
    assert "(run failed)" in failed.stderr and "Traceback" not in failed.stderr
    assert failed.states == []  # state never advanced past unwritten records
    assert sandbox.stats()["creates"] == 0

    sandbox.set_faults()
    rerun = run_target(sandbox, tmp_path, load(), match_field="tax_id")
    assert_complete(sandbox, rerun)


def test_patch_timeouts_are_retried(sandbox, tmp_path):
    customers = sandbox.customers()[:4]
    records = [{"id": c["id"], "address": f"Timeout {i}"} for i, c in enumerate(customers)]
    sandbox.set_faults(slow_ms=1500, script=[{"nth": 2, "fault": "slow", "method": "PATCH"}])
    run = run_target(sandbox, tmp_path, messages_for(records), request_timeout=1)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.count("updated") == 4
    after = {c["id"]: c["address"] for c in sandbox.customers()}
    assert [after[c["id"]] for c in customers] == [f"Timeout {i}" for i in range(4)]


def test_index_reads_every_page_of_a_list_that_counts_without_linking(sandbox, tmp_path):
    """Pages with ``count`` but no ``next``: an index of page 1 alone would re-create 150."""
    sandbox.set_faults(no_links=True)
    existing = sandbox.customers()
    edited = [{"tax_id": c["tax_id"], "name": c["name"] + " (edited)"} for c in existing[-150:]]
    run = run_target(sandbox, tmp_path, messages_for(edited), match_field="tax_id")
    assert run.returncode == 0, run.stderr[-3000:]
    assert (run.count("created"), run.count("updated")) == (0, 150)
    assert len(sandbox.customers()) == len(existing)
