"""Small loads look their keys up instead of reading the whole account (issue 9 part 2).

Against a real sandbox of a few thousand customers: a 10-record load costs requests in
proportion to its records and ends in the same state as the index path; a server that
ignores or refuses the filter makes the run read the index (no duplicates); a large load
still reads the index; keys repeated in a batch are looked up and written once; later
batches match what earlier ones looked up and wrote, writes in flight included.
"""

from __future__ import annotations

import logging

import pytest
from target_helpers import (
    assert_exactly_once,
    messages_for,
    new_customer,
    run_target,
    target_config,
)

from piriod_sandbox import SandboxProcess
from target_piriod.config import Settings
from target_piriod.diff import WRITABLE
from target_piriod.loader import Loader

SEED = SANDBOX_CUSTOMERS = 3000  # 30 index pages (the conftest sandbox's size here)


def ten_changes(customers: list[dict]) -> list[dict]:
    """4 updates by tax_id, 3 by id, 3 creates by tax_id."""
    by_tax_id = [{"tax_id": c["tax_id"], "address": f"Nueva {n}"}
                 for n, c in enumerate(customers[100:104])]
    by_id = [{"id": c["id"], "phone": f"+56 2 0000 000{n}"}
             for n, c in enumerate(customers[200:203])]
    return [*by_tax_id, *by_id, *(new_customer(n) for n in range(1, 4))]


def final_state(sandbox: SandboxProcess) -> dict[str, dict]:
    """Every customer by tax_id: its writable attributes, and its id if it was seeded.

    (Stamps differ between equal runs, and so do the ids of created customers.)
    """
    state = {}
    for number, customer in enumerate(sandbox.customers()):
        kept = {name: customer.get(name) for name in WRITABLE}
        if number < SEED:
            kept["id"] = customer["id"]
        state[customer["tax_id"]] = kept
    return state


def requests(sandbox: SandboxProcess, method: str | None = None) -> int:
    stats = sandbox.stats()
    return stats["requests"] if method is None else stats["by_method"].get(method, 0)


def make_loader(sandbox: SandboxProcess, tmp_path, **settings: object) -> Loader:
    config = target_config(sandbox, tmp_path, **{"match_field": "tax_id", **settings})
    return Loader(Settings.parse(config), logging.getLogger("test-lookup"), "run")


def load_batches(loader: Loader, *batches: list[dict]) -> None:
    try:
        for batch in batches:
            loader.load(batch)
        loader.flush()
    finally:
        loader.finish()


def test_ten_changes_are_looked_up_and_end_as_the_index_path(sandbox, tmp_path):
    records = ten_changes(sandbox.customers())
    sandbox.reset_stats()
    run = run_target(sandbox, tmp_path, messages_for(records), match_field="tax_id")
    assert run.returncode == 0, run.stderr
    assert (run.count("created"), run.count("updated"), run.count("rejected")) == (3, 7, 0)
    assert "Looking 10 key(s) up (10 requests) instead of reading the index of 3000" \
        in run.stderr
    assert "Indexed" not in run.stderr
    # 1 index page (the account's count) + 10 lookups + 10 writes.
    assert requests(sandbox) <= 3 * len(records) + 2
    assert requests(sandbox, "GET") == 11
    looked_up = final_state(sandbox)

    sandbox.reset(SEED)  # the same load, the batch full: the index path
    run = run_target(sandbox, tmp_path, messages_for(records), match_field="tax_id",
                     batch_size_rows=len(records))
    assert run.returncode == 0, run.stderr
    assert "Indexed 3000 customers" in run.stderr and "Looking" not in run.stderr
    assert requests(sandbox, "GET") == 30 + 1  # the pages, and the closing count
    assert final_state(sandbox) == looked_up
    assert len(looked_up) == SEED + 3


def test_switched_off_lookups_read_the_index_to_the_same_end(sandbox, tmp_path):
    records = ten_changes(sandbox.customers())
    loader = make_loader(sandbox, tmp_path)
    load_batches(loader, records)
    assert loader.lookups.mode == "lookup"
    looked_up = final_state(sandbox)

    sandbox.reset(SEED)
    loader = make_loader(sandbox, tmp_path)
    loader.lookups.look_up_keys = False
    load_batches(loader, records)
    assert loader.lookups.mode == "index" and len(loader.index) == SEED + 3
    assert requests(sandbox, "GET") == 30 + 1  # the pages, and the closing count
    assert final_state(sandbox) == looked_up


@pytest.mark.parametrize("faults", [{"ignore_params": True},
                                    {"reject_params": ["tax_id", "email"]}],
                         ids=["ignores_filter", "refuses_filter"])
def test_a_server_without_the_filter_makes_the_run_read_the_index(sandbox, tmp_path,
                                                                  faults):
    customers = sandbox.customers()
    records = ten_changes(customers)
    records.append({**new_customer(1), "website": "https://again.example"})  # same key
    sandbox.set_faults(**faults)
    run = run_target(sandbox, tmp_path, messages_for(records), match_field="tax_id")
    assert run.returncode == 0, run.stderr
    assert "Reading the whole index instead of looking keys up: the" in run.stderr
    assert "Indexed 3000 customers" in run.stderr
    assert (run.count("created"), run.count("updated"), run.count("rejected")) == (3, 7, 0)
    assert requests(sandbox, "POST") == 3
    sandbox.set_faults()
    assert len(sandbox.customers()) == SEED + 3
    assert_exactly_once(sandbox, "tax_id",
                        [r["tax_id"] for r in records if "tax_id" in r])
    by_tax_id = final_state(sandbox)
    assert by_tax_id[new_customer(1)["tax_id"]]["website"] == "https://again.example"
    assert by_tax_id[customers[100]["tax_id"]]["address"] == "Nueva 0"


@pytest.mark.parametrize(("count", "reason"), [
    (500, "a full batch (500 records): the load may be large"),
    (40, "41 lookup requests would cost as much as the index's 30 pages")])
def test_a_large_load_reads_the_index(sandbox, tmp_path, caplog, count, reason):
    caplog.set_level(logging.INFO, "test-lookup")
    records = [new_customer(n) for n in range(1, count + 1)]
    loader = make_loader(sandbox, tmp_path)
    load_batches(loader, records)
    assert loader.lookups.mode == "index"
    assert f"Reading the index: {reason}" in caplog.text
    assert loader.summary.created == count
    # The page read to learn the account's size is the index's first: nothing is wasted.
    assert requests(sandbox, "GET") == 30 + 1  # the pages, and the closing count
    assert_exactly_once(sandbox, "tax_id", [r["tax_id"] for r in records])


def test_a_load_that_grows_switches_to_the_index_once(sandbox, tmp_path):
    first = [new_customer(n) for n in range(1, 6)]
    second = [{**new_customer(n), "address": f"Otra {n}"} for n in range(1, 501)]
    loader = make_loader(sandbox, tmp_path, max_workers=8)
    sandbox.set_faults(latency_ms=10)  # batch 1's writes still in flight at batch 2
    load_batches(loader, first, second, [new_customer(501)])
    sandbox.set_faults()
    assert loader.lookups.mode == "index"
    assert (loader.summary.created, loader.summary.updated) == (501, 5)
    assert_exactly_once(sandbox, "tax_id", [r["tax_id"] for r in second])
    assert final_state(sandbox)[new_customer(3)["tax_id"]]["address"] == "Otra 3"


def test_a_key_twice_in_a_batch_is_looked_up_once_per_spelling_and_written_once(
        sandbox, tmp_path):
    seeded = sandbox.customers()[7]
    tax_id = new_customer(1)["tax_id"]
    records = [{"tax_id": f"  {tax_id} ", "website": "https://twice.example"},
               new_customer(1), {"tax_id": tax_id, "phone": "+56 2 1234 5678"},
               {"id": seeded["id"], "address": "Por id 1"},
               {"tax_id": seeded["tax_id"], "phone": "+56 2 8765 4321"}]
    loader = make_loader(sandbox, tmp_path, max_workers=8)
    load_batches(loader, records)
    assert loader.lookups.mode == "lookup"
    # page 1, the new tax_id as spelled twice, the seeded one once, the id once
    assert requests(sandbox, "GET") == 5
    assert (requests(sandbox, "POST"), requests(sandbox, "PATCH")) == (1, 1)
    assert loader.summary.merged == 3
    after = final_state(sandbox)
    assert after[tax_id]["phone"] == "+56 2 1234 5678"
    assert after[tax_id]["website"] == "https://twice.example"
    assert after[seeded["tax_id"]]["address"] == "Por id 1"
    assert after[seeded["tax_id"]]["phone"] == "+56 2 8765 4321"
    assert len(after) == SEED + 1


def test_later_batches_match_what_was_looked_up_and_written_in_flight(sandbox, tmp_path):
    seeded = sandbox.customers()[9]
    sandbox.set_faults(latency_ms=40)  # each batch's writes still run when the next plans
    loader = make_loader(sandbox, tmp_path)
    load_batches(loader,
                 [new_customer(1), {"id": seeded["id"], "phone": "+56 2 1111 1111"}],
                 [{**new_customer(1), "address": "Segunda 1"},
                  {"tax_id": seeded["tax_id"], "phone": "+56 2 2222 2222"}],
                 [{**new_customer(1), "address": "Tercera 1"}, {"id": seeded["id"]}])
    sandbox.set_faults()
    assert loader.lookups.mode == "lookup"
    assert (loader.summary.created, loader.summary.updated) == (1, 4)
    assert loader.summary.unchanged == 1
    after = final_state(sandbox)
    assert after[new_customer(1)["tax_id"]]["address"] == "Tercera 1"
    assert after[seeded["tax_id"]]["phone"] == "+56 2 2222 2222"
    assert len(after) == SEED + 1
    # page 1; batch 1: the tax_id and the id; batch 2: the seeded tax_id (the new one is
    # known); batch 3: nothing new
    assert requests(sandbox, "GET") == 4


def test_unknown_ids_are_not_found_as_with_the_index(sandbox, tmp_path):
    loader = make_loader(sandbox, tmp_path)
    load_batches(loader, [{"id": "cus_does_not_exist", "phone": "+56 2 0"}])
    assert loader.lookups.mode == "lookup" and loader.summary.rejected == 1
    assert sandbox.stats()["writes"] == 0


def test_a_retrieve_answering_another_customer_makes_the_run_read_the_index(
        sandbox, tmp_path, monkeypatch):
    customers = sandbox.customers()
    loader = make_loader(sandbox, tmp_path)
    monkeypatch.setattr(loader.client, "get_customer", lambda _: customers[1])
    load_batches(loader, [{"id": customers[0]["id"], "phone": "+56 2 3333 3333"}])
    assert loader.lookups.mode == "index" and len(loader.index) == SEED
    after = {c["id"]: c for c in sandbox.customers()}
    assert after[customers[0]["id"]]["phone"] == "+56 2 3333 3333"
    assert after[customers[1]["id"]]["phone"] == customers[1]["phone"]


def test_emails_are_looked_up_as_spelled_and_a_miss_reads_the_index(sandbox, tmp_path):
    mixed = sandbox.insert({"name": "Mixta SpA", "email": "Facturas.Mixta@Example.com"})
    loader = make_loader(sandbox, tmp_path, match_field="email")
    load_batches(loader, [{"email": "Facturas.Mixta@Example.com", "phone": "+56 2 4"}])
    assert loader.lookups.mode == "lookup" and loader.summary.updated == 1

    # Spelled in other letter case: the exact filter cannot find it, the index can.
    loader = make_loader(sandbox, tmp_path, match_field="email")
    load_batches(loader, [{"email": "facturas.mixta@example.com", "phone": "+56 2 5"}])
    assert loader.lookups.mode == "index"
    assert loader.summary.updated == 1 and loader.summary.created == 0
    after = {c["id"]: c for c in sandbox.customers()}
    assert after[mixed["id"]]["phone"] == "+56 2 5" and len(after) == SEED + 1


def test_metadata_keys_have_no_filter_and_read_the_index(sandbox, tmp_path):
    loader = make_loader(sandbox, tmp_path, match_field="metadata.erp_id")
    load_batches(loader, [{"metadata": {"erp_id": "ERP-0000001"}, "phone": "+56 2 6"}])
    assert loader.lookups.mode == "index" and loader.summary.updated == 1
    assert requests(sandbox, "GET") == 30 + 1  # the pages, and the closing count


@pytest.mark.parametrize("lookups", [True, False], ids=["lookups", "index"])
def test_an_id_that_is_not_utf8_is_no_customer(sandbox, tmp_path, lookups):
    # Bytes that were not UTF-8 reach the target as lone surrogates: no request can carry
    # them (the GET crashed the run), and no customer has such an id.
    loader = make_loader(sandbox, tmp_path)
    loader.lookups.look_up_keys = lookups
    load_batches(loader, [{"id": "\udcffcus", "phone": "+56 2 7"},
                          {"tax_id": "\udcff76-1", "name": "Bad Bytes SpA"}])
    assert loader.summary.rejected == 2 and sandbox.stats()["writes"] == 0
    assert loader.lookups.mode == ("lookup" if lookups else "index")
