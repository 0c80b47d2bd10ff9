"""A listing that moves while the target reads its index creates no customer twice.

Another client deletes customers and commits late inserts in the middle of the creation
order while the index is read: with the old reader, customers at one page edge were never
read, the target believed they did not exist and created them a second time. The sandbox
moves the listing exactly before a given list request (its churn control), so the race
is the same on every run.
"""

from __future__ import annotations

from collections import Counter

import pytest
from tap_helpers import instant
from target_helpers import run_target, schema_message, state_message

SANDBOX_CUSTOMERS = 600  # six index pages of 100


def records_for_existing(sandbox) -> list[dict]:
    """Edits, keyed by tax_id, of customers 200..599 (beyond where the churn happens)."""
    by_created = sorted(sandbox.customers(), key=lambda c: (instant(c["created"]), c["id"]))
    # Whole records (a create of one would succeed): a missed customer is duplicated.
    return [{"tax_id": customer["tax_id"], "name": customer["name"], "country": "CL",
             "website": f"https://edited-{n}.example"}
            for n, customer in enumerate(by_created[200:])]


def load(sandbox, tmp_path, records: list[dict], workers: int):
    messages = [schema_message(), *({"type": "RECORD", "stream": "customers", "record": r}
                                     for r in records), state_message({"done": True})]
    return run_target(sandbox, tmp_path, messages, match_field="tax_id", mode="upsert",
                      max_workers=workers)


def assert_no_duplicates_and_all_accounted(sandbox, run, records: list[dict]) -> None:
    counts = Counter(customer["tax_id"] for customer in sandbox.customers())
    twice = {r["tax_id"]: counts[r["tax_id"]] for r in records if counts[r["tax_id"]] > 1}
    assert not twice, f"customers created a second time: {twice}"
    assert run.count("created") == 0
    assert run.count("updated") + len(run.rejects) == len(records), run.summary


@pytest.mark.parametrize("workers", [1, 8])
def test_an_index_read_under_churn_is_read_again_and_creates_no_duplicate(
        sandbox, tmp_path, workers):
    records = records_for_existing(sandbox)
    sandbox.set_churn(at=3, deletes=5, inserts=2, within=100, rng_seed=5)
    run = load(sandbox, tmp_path, records, workers)
    assert run.returncode == 0, run.stderr
    assert sandbox.churn()["applied"] == 1
    assert_no_duplicates_and_all_accounted(sandbox, run, records)
    assert run.count("updated") == len(records)
    assert "read 2 times" in run.stderr


@pytest.mark.parametrize("workers", [1, 8])
def test_an_index_that_never_settles_has_its_creates_looked_up_first(
        sandbox, tmp_path, workers):
    records = records_for_existing(sandbox)
    brand_new = [{"tax_id": f"77.{n:03d}.111-K", "name": f"Nueva {n} SpA", "country": "CL"}
                 for n in range(3)]
    sandbox.set_churn(at=2, every=1, deletes=2, inserts=1, within=100, rng_seed=6)
    run = load(sandbox, tmp_path, records + brand_new, workers)
    assert run.returncode == 0, run.stderr
    counts = Counter(customer["tax_id"] for customer in sandbox.customers())
    twice = {r["tax_id"]: counts[r["tax_id"]] for r in records + brand_new
             if counts[r["tax_id"]] != 1}
    assert not twice, f"customers missing or created a second time: {twice}"
    assert run.count("created") == len(brand_new)
    assert "kept moving" in run.stderr and "looked up by key" in run.stderr
    assert run.count("updated") + len(run.rejects) == len(records), run.summary


def test_a_key_without_a_filter_is_refused_not_created_while_the_listing_keeps_moving(
        sandbox, tmp_path):
    """metadata.<key> has no filter: one more read; if that moves too, refuse, don't guess."""
    by_created = sorted(sandbox.customers(), key=lambda c: (instant(c["created"]), c["id"]))
    records = [{"metadata": {"erp_id": c["metadata"]["erp_id"]}, "name": c["name"],
                "country": "CL", "website": f"https://erp-{n}.example"}
               for n, c in enumerate(by_created[200:])]
    brand_new = [{"metadata": {"erp_id": f"NEW-{n}"}, "name": f"Nueva {n} SpA",
                  "country": "CL"} for n in range(3)]
    records += brand_new
    sandbox.set_churn(at=2, every=1, deletes=2, inserts=1, within=100, rng_seed=7)
    messages = [schema_message(), *({"type": "RECORD", "stream": "customers", "record": r}
                                     for r in records), state_message({"done": True})]
    run = run_target(sandbox, tmp_path, messages, match_field="metadata.erp_id",
                     mode="upsert", max_rejects=len(records))
    assert run.returncode == 0, run.stderr
    counts = Counter((c.get("metadata") or {}).get("erp_id") for c in sandbox.customers())
    twice = {r["metadata"]["erp_id"]: counts[r["metadata"]["erp_id"]] for r in records
             if counts[r["metadata"]["erp_id"]] > 1}
    assert not twice, f"customers created a second time: {twice}"
    assert run.count("created") == 0
    # No read held still: a key no read found cannot be ruled out, so it waits for a re-run.
    assert {r["reason"] for r in run.rejects} == {"unverified_match"}
    assert {r["record"]["metadata"]["erp_id"] for r in run.rejects} >= {"NEW-0", "NEW-1",
                                                                          "NEW-2"}
    assert run.count("updated") + len(run.rejects) == len(records), run.summary
    assert "records matching no customer are refused" in run.stderr
