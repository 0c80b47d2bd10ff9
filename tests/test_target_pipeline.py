"""Overlapping batches: batch n+1 is planned while batch n is written, safely.

The invariants (target_piriod/loader.py and write.py): one write at a time per key and per customer,
later records matched against what earlier writes wrote, at most one batch in flight
when ``load()`` returns, and no STATE before the writes of the records it covers.
"""

from __future__ import annotations

import io
import json
import logging
import threading
from collections import Counter

from singer_sdk import Target
from target_helpers import messages_for, new_customer, target_config

from target_piriod.config import Settings
from target_piriod.loader import Loader
from target_piriod.target import TargetPiriod


class WriteLog:
    """Wraps a loader's client: who is being written now, and what has been written."""

    def __init__(self, loader: Loader) -> None:
        self.lock = threading.Lock()
        self.busy: Counter = Counter()  # key or customer id -> writes in flight
        self.overlaps: list[str] = []
        self.created: list[str] = []  # tax ids, in completion order
        self.patched: list[str] = []  # customer ids, in completion order
        client = loader.client
        create, update = client.create_customer, client.update_customer
        client.create_customer = lambda body: self._run(
            body["tax_id"], self.created, create, body)
        client.update_customer = lambda cid, changes: self._run(
            cid, self.patched, update, cid, changes)

    def _run(self, name: str, done: list[str], call, *args):
        with self.lock:
            self.busy[name] += 1
            if self.busy[name] > 1:
                self.overlaps.append(name)
        try:
            return call(*args)
        finally:
            with self.lock:
                self.busy[name] -= 1
                done.append(name)


def make_loader(sandbox, tmp_path, **config) -> Loader:
    settings = {"match_field": "tax_id", "max_workers": 8, **config}
    return Loader(Settings.parse(target_config(sandbox, tmp_path, **settings)),
                  logging.getLogger("test"), "run")


def test_a_key_in_flight_is_written_again_only_after_its_write(sandbox, tmp_path):
    sandbox.set_faults(latency_ms=30)
    loader = make_loader(sandbox, tmp_path)
    log = WriteLog(loader)
    first = [new_customer(n) for n in range(1, 9)]
    second = [new_customer(n, phone=f"+56 9 {n}") for n in range(1, 9)]
    loader.load(first)  # returns with (some of) the 8 POSTs still in flight
    loader.load(second)  # the same keys: must wait for the POSTs, then PATCH
    loader.flush()
    summary = loader.finish()
    assert not log.overlaps
    assert (summary.created, summary.updated) == (8, 8)
    assert sandbox.stats()["creates"] == 8  # no second POST for a key in flight
    assert Counter(c["tax_id"] for c in sandbox.customers()[-8:]) == Counter(
        r["tax_id"] for r in first)
    assert {c["phone"] for c in sandbox.customers()[-8:]} == {f"+56 9 {n}" for n in
                                                              range(1, 9)}


def test_a_customer_in_flight_under_another_key_is_patched_after(sandbox, tmp_path):
    sandbox.set_faults(latency_ms=30)
    seeded = sandbox.customers()[:6]
    loader = make_loader(sandbox, tmp_path)
    log = WriteLog(loader)
    loader.load([{"id": c["id"], "phone": "+1"} for c in seeded])
    loader.load([{"tax_id": c["tax_id"], "phone": "+2"} for c in seeded])
    loader.flush()
    summary = loader.finish()
    assert not log.overlaps
    assert summary.updated == 12 and summary.created == 0
    after = {c["id"]: c for c in sandbox.customers()}
    assert {after[c["id"]]["phone"] for c in seeded} == {"+2"}  # the later record won


def test_a_key_set_by_a_patch_in_flight_is_not_created_again(sandbox, tmp_path):
    sandbox.set_faults(latency_ms=30)
    seeded = sandbox.customers()[7]
    loader = make_loader(sandbox, tmp_path)
    WriteLog(loader)
    loader.load([{"id": seeded["id"], "tax_id": "99.999.999-9"}])  # re-keys a customer
    loader.load([{"tax_id": "99.999.999-9", "phone": "+3"}])  # must match it, not POST
    loader.flush()
    loader.finish()
    assert sandbox.stats()["creates"] == 0
    assert [c["phone"] for c in sandbox.customers() if c["tax_id"] == "99.999.999-9"] == [
        "+3"]


def test_load_returns_with_at_most_its_own_batch_in_flight(sandbox, tmp_path):
    sandbox.set_faults(latency_ms=30)
    loader = make_loader(sandbox, tmp_path, max_workers=2)
    log = WriteLog(loader)
    batches = [[new_customer(n) for n in range(start, start + 6)] for start in (1, 11, 21)]
    for number, batch in enumerate(batches):
        loader.load(batch)
        for earlier in batches[:number]:  # every earlier batch is fully written
            assert {r["tax_id"] for r in earlier} <= set(log.created)
    loader.flush()
    assert len(log.created) == 18  # flush: everything written
    assert loader.finish().created == 18


def test_state_is_emitted_only_after_the_writes_it_covers(sandbox, tmp_path, monkeypatch):
    sandbox.set_faults(latency_ms=20)
    records = [new_customer(n) for n in range(1, 41)]
    lines = []
    for message in messages_for(records)[:-1]:
        lines.append(json.dumps(message))
        if message["type"] == "RECORD" and int(message["record"]["tax_id"][3:6]) % 5 == 0:
            position = int(message["record"]["tax_id"][3:6])
            lines.append(json.dumps({"type": "STATE", "value": {"position": position}}))
    target = TargetPiriod(config=target_config(sandbox, tmp_path, match_field="tax_id",
                                               max_workers=4, batch_size_rows=10))
    log = WriteLog(target.loader)
    emitted: list[int] = []

    def check_state(self, state: dict) -> None:
        position = state["position"]
        covered = {r["tax_id"] for r in records[:position]}
        assert covered <= set(log.created), f"STATE {position} ahead of its writes"
        emitted.append(position)

    monkeypatch.setattr(Target, "_write_state_message", check_state)
    target.listen(file_input=io.StringIO("\n".join(lines) + "\n"))
    assert emitted and emitted[-1] == 40 and len(emitted) > 1
    assert len(log.created) == 40 and not log.overlaps


def test_long_loads_report_progress(sandbox, tmp_path, monkeypatch, caplog):
    """A person watching a long load sees records/s, counts, requests and retries."""
    monkeypatch.setattr("target_piriod.report.PROGRESS_EVERY_SECONDS", 0.0)
    sandbox.set_faults(retry_after=0, script=[{"nth": 1, "fault": "503", "method": "GET"}])
    loader = make_loader(sandbox, tmp_path)
    with caplog.at_level(logging.INFO, logger="test"):
        loader.load([new_customer(n) for n in range(1, 6)])
        loader.flush()
        loader.load([new_customer(n) for n in range(1, 6)])
        loader.flush()
        loader.finish()
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Progress")]
    assert len(lines) == 2
    assert "10 records" in lines[1] and "5 created" in lines[1] and "1 retries" in lines[1]
    assert "records/s" in lines[1]
    assert any(r.getMessage().startswith("Indexing: ") for r in caplog.records)


def test_counters_and_outcomes_change_only_on_the_calling_thread(sandbox, tmp_path):
    """Workers only send requests: the summary, index and claims are the caller's alone."""
    sandbox.set_faults(latency_ms=10, retry_after=0, script=[
        {"nth": n, "fault": fault, "method": "POST"}
        for n, fault in ((2, "drop_after"), (3, "503"), (5, "429"))])
    loader = make_loader(sandbox, tmp_path, max_workers=4)
    touched: set[str] = set()

    class WatchedSummary(type(loader.summary)):
        def __setattr__(self, name, value):
            touched.add(threading.current_thread().name)
            super().__setattr__(name, value)

    loader.report.summary = WatchedSummary()
    index_add = loader.index.add
    loader.index.add = lambda customer: (touched.add(threading.current_thread().name),
                                         index_add(customer))[1]
    seeded = sandbox.customers()[:5]
    loader.load([new_customer(n) for n in range(1, 13)])
    loader.load([{"id": c["id"], "phone": "+9"} for c in seeded] +
                [new_customer(1, email="bad"), {"id": "gone", "name": "x"}])
    loader.flush()
    summary = loader.finish()
    assert (summary.created, summary.updated, summary.rejected) == (12, 5, 2)
    assert touched == {threading.main_thread().name}
