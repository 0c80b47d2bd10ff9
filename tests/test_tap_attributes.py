"""Attributes Piriod adds that the schema does not name: passed through, and logged once.

The sandbox serves an attribute the API does not document when a ``touch`` adds it (as
Piriod adding one would); a real tap process reads it.
"""

from __future__ import annotations

import copy
import logging

import pytest
from tap_helpers import run_tap

from piriod.schema import load_customers_schema
from piriod_sandbox import SandboxProcess
from tap_piriod.attributes import UnknownAttributes, tally

SANDBOX_CUSTOMERS = 60
LINE = "the schema does not name"


@pytest.fixture
def new_attributes(sandbox: SandboxProcess) -> list[str]:
    """Four customers gain ``loyalty_tier``, one of them ``referral_code`` too."""
    ids = [customer["id"] for customer in sandbox.customers()[10:14]]
    sandbox.touch(ids=ids, changes={"loyalty_tier": "gold"})
    sandbox.touch(ids=ids[:1], changes={"referral_code": "R-1"})
    return ids


def warnings_about(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if LINE in line]


@pytest.mark.parametrize("mode", ["RECORD", "BATCH"])
def test_the_tap_names_new_attributes_once_with_counts(
        sandbox: SandboxProcess, tmp_path, new_attributes: list[str], mode: str) -> None:
    config = {} if mode == "RECORD" else {"batch_config": {
        "encoding": {"format": "jsonl", "compression": "gzip"},
        "storage": {"root": (tmp_path / "files").as_uri()}, "batch_size": 25}}
    run = run_tap(sandbox, tmp_path, **config)
    assert run.returncode == 0, run.stderr[-2000:]
    [line] = warnings_about(run.stderr)
    assert "Piriod sent 2 attributes the schema does not name: loyalty_tier (4 records), " \
           "referral_code (1 record)." in line
    assert 'README, "New attributes"' in line
    assert "loyalty_tier" not in run.schema["properties"]
    if mode == "RECORD":  # passed through, as the schema allows
        tiers = {record["id"]: record.get("loyalty_tier") for record in run.records}
        assert {key for key, tier in tiers.items() if tier == "gold"} == set(new_attributes)


def test_nothing_is_logged_when_every_attribute_is_known(sandbox: SandboxProcess,
                                                         tmp_path) -> None:
    run = run_tap(sandbox, tmp_path)
    assert run.returncode == 0
    assert len(run.records) == SANDBOX_CUSTOMERS
    assert warnings_about(run.stderr) == []


def test_a_catalog_naming_the_attribute_sends_it_in_the_schema(
        sandbox: SandboxProcess, tmp_path, new_attributes: list[str]) -> None:
    """Meltano's ``schema:`` extra (README) adds it to the catalog: then it is known."""
    discovered = run_tap(sandbox, tmp_path)  # the SCHEMA the tap sends, as a catalog entry
    schema = copy.deepcopy(discovered.schema)
    schema["properties"]["loyalty_tier"] = {"type": ["string", "null"]}
    catalog = {"streams": [{
        "tap_stream_id": "customers", "stream": "customers", "schema": schema,
        "key_properties": ["id"], "replication_key": "updated",
        "metadata": [{"breadcrumb": [], "metadata": {"selected": True,
                                                     "replication-key": "updated"}}]}]}
    run = run_tap(sandbox, tmp_path, catalog=catalog)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.schema["properties"]["loyalty_tier"] == {"type": ["string", "null"]}
    [line] = warnings_about(run.stderr)
    assert "Piriod sent 1 attribute the schema does not name: referral_code (1 record)." \
        in line


def test_only_top_level_names_are_counted() -> None:
    """Nested objects reach loaders whole (one JSON column): their keys are not news."""
    unknown = UnknownAttributes(load_customers_schema())
    unknown.observe({"id": "a", "metadata": {"anything": 1}, "country": {"flag": "x"}})
    assert unknown.summary() is None
    unknown.observe({"id": "b", "tier": 1, "zone": 2})
    unknown.observe({"id": "c", "tier": 1})
    assert unknown.counts == {"tier": 2, "zone": 1}


def test_the_tally_passes_records_through_and_logs_after_the_last(caplog) -> None:
    records = [{"id": str(number), "tier": number} for number in range(3)]
    logger = logging.getLogger("test-attributes")
    passed = tally(iter(records), {"properties": {"id": {}}}, logger)
    with caplog.at_level(logging.WARNING, logger="test-attributes"):
        assert next(passed) is records[0]
        assert caplog.records == []  # not before the run's records are all seen
        assert list(passed) == records[1:]
    [record] = caplog.records
    assert "Piriod sent 1 attribute the schema does not name: tier (3 records)." \
        in record.getMessage()
