"""Unit tests of target-piriod's pieces: keys, normalisation, diffing, schema, pacing, bodies."""

from __future__ import annotations

import email.utils
import logging
import random
import threading
import time

import pytest
from singer_sdk.exceptions import ConfigValidationError
from target_helpers import new_customer

from piriod.client import PiriodClient
from piriod.retry import Throttle
from piriod.retry import retry_after_seconds as _retry_after
from piriod.schema import load_customers_schema
from target_piriod.actions import Action, Kind
from target_piriod.config import Settings
from target_piriod.diff import changes_for, customer_shape, merge_payloads, to_code
from target_piriod.index import CustomerIndex
from target_piriod.keys import ConfigError, KeySpec, record_key
from target_piriod.loader import Loader
from target_piriod.plan import Planner
from target_piriod.records import PayloadValidator, to_payload, write_schema
from target_piriod.target import TargetPiriod
from target_piriod.write import CustomerWriter

READ_ONLY = {"id", "aggregations", "contacts", "sources", "created", "updated"}


@pytest.mark.parametrize("name", ["id", "tax_id", "email", "name", "metadata.erp_id"])
def test_match_fields_accepted(name):
    assert KeySpec.parse(name).label == name


@pytest.mark.parametrize("name", ["country", "metadata", "metadata.", "aggregations", "nope"])
def test_match_fields_refused(name):
    with pytest.raises(ConfigError):
        KeySpec.parse(name)


def test_record_key_prefers_the_piriod_id_then_the_match_field():
    spec = KeySpec.parse("metadata.erp_id")
    assert record_key({"id": "abc", "metadata": {"erp_id": 7}}, spec) == ("id", "abc")
    assert record_key({"metadata": {"erp_id": 7}}, spec) == ("metadata.erp_id", "7")
    assert record_key({"metadata": {}}, spec) is None
    assert record_key({"email": " A@B.example "}, KeySpec.parse("email")) == (
        "email", "a@b.example")
    assert record_key({"tax_id": "1-9"}, KeySpec.parse("id")) is None


def test_country_and_state_objects_become_codes():
    assert to_code({"id": "CL", "name": "Chile"}) == "CL"
    assert to_code(" cl ") == "CL"
    assert to_code("") is None
    assert to_code({"name": "Chile"}) == {"name": "Chile"}  # left for validation to refuse
    payload = to_payload({"country": {"id": "CL"}, "state": {"id": "CL-RM", "country": "CL"},
                          "id": "x", "aggregations": {}, "updated": "2024-01-01T00:00:00Z"})
    assert payload == {"country": "CL", "state": "CL-RM"}


def test_payloads_hold_only_writable_attributes():
    payload = to_payload({**new_customer(1), "id": "x", "aggregations": {}, "contacts": [],
                          "sources": [], "created": "c", "updated": "u", "other": 1})
    assert not set(payload) & (READ_ONLY | {"other"})
    assert set(payload) <= set(load_customers_schema()["x-writable"])


def test_changes_contain_only_what_differs():
    current = customer_shape({"id": "x", "name": "A", "phone": "1", "country": {"id": "CL"},
                              "metadata": {"erp_id": "E1", "segment": "smb"}})
    assert changes_for(current, {"name": "A", "country": "CL"}) == {}
    assert changes_for(current, {"name": "B", "phone": "1"}) == {"name": "B"}
    # A DRF API trims stored text: padding alone would patch the customer on every run.
    assert changes_for(current, {"name": "  A ", "phone": "1\n"}) == {}
    assert changes_for(current, {"name": " B "}) == {"name": " B "}
    assert changes_for(current, {"metadata": {"erp_id": "E1"}}) == {}
    assert changes_for(current, {"metadata": {"crm": "h"}}) == {
        "metadata": {"erp_id": "E1", "segment": "smb", "crm": "h"}}
    assert changes_for(current, {"metadata": {"segment": None}}) == {
        "metadata": {"erp_id": "E1"}}


def test_merging_duplicates_later_values_win():
    merged = merge_payloads({"name": "A", "phone": "1", "metadata": {"a": 1, "b": 1}},
                            {"name": "B", "metadata": {"b": 2}})
    assert merged == {"name": "B", "phone": "1", "metadata": {"a": 1, "b": 2}}


def test_index_follows_key_changes():
    index = CustomerIndex(KeySpec.parse("tax_id"))
    index.add({"id": "x", "tax_id": "1"})
    index.add({"id": "x", "tax_id": "2"})
    assert index.find("1") == [] and [c["id"] for c in index.find("2")] == ["x"]


def test_write_schema_comes_from_the_schema_file():
    schema = write_schema()
    assert list(schema["properties"]) == load_customers_schema()["x-writable"]
    validator = PayloadValidator()
    assert validator.errors(to_payload(new_customer(1))) == []
    assert validator.errors({"email": "nope"})[0].startswith("email:")
    assert validator.errors({"country": "Chile"})[0].startswith("country:")
    assert validator.errors({"metadata": "x"})[0].startswith("metadata:")


def test_retry_after_accepts_seconds_and_http_dates():
    assert _retry_after("2") == 2.0
    assert _retry_after(None) == 1.0
    assert _retry_after("junk") == 1.0
    assert 0 < _retry_after(email.utils.formatdate(time.time() + 3, usegmt=True)) <= 3


def test_throttle_paces_only_on_evidence_and_once_per_burst():
    throttle = Throttle()
    throttle.delay()
    throttle.on_throttled(0)
    assert throttle.rate is None  # no request was accepted yet: nothing to estimate from
    for _ in range(10):
        throttle.on_success()
    time.sleep(0.6)  # past the first burst's cooldown
    throttle.on_throttled(0)
    first = throttle.rate
    assert first is not None and first >= 1
    throttle.on_throttled(0)  # another thread's 429 of the same burst
    assert throttle.rate == pytest.approx(first, rel=0.05)


def test_client_follows_next_links_by_query_only(sandbox):
    client = PiriodClient(sandbox.url, sandbox.token)
    ids = [customer["id"] for customer in client.iter_customers({"ordering": "created"})]
    assert len(ids) == len(set(ids)) == 250
    assert client.requests_sent == 3
    assert client.redact(f"x {sandbox.token} y") == "x *** y"


def test_loader_sends_only_writable_changed_attributes(sandbox, tmp_path):
    config = {"auth_token": sandbox.token, "api_url": sandbox.url, "match_field": "tax_id",
              "dead_letter_path": str(tmp_path / "rejects.jsonl")}
    loader = Loader(Settings.parse(config), logging.getLogger("test"), "run")
    sent: list[tuple[str, dict]] = []
    create, update = loader.client.create_customer, loader.client.update_customer

    def record_create(body):
        sent.append(("POST", body))
        return create(body)

    def record_update(customer_id, body):
        sent.append(("PATCH", body))
        return update(customer_id, body)

    loader.client.create_customer, loader.client.update_customer = record_create, record_update
    seeded = sandbox.customers()[0]
    loader.load([{**seeded, "phone": "+1 555", "aggregations": {"balance": 1}},
                 {**new_customer(1), "id": None, "contacts": [], "updated": "2020-01-01"}])
    summary = loader.finish()
    assert (summary.created, summary.updated) == (1, 1)
    assert ("PATCH", {"phone": "+1 555"}) in sent
    [post] = [body for method, body in sent if method == "POST"]
    assert not set(post) & READ_ONLY and post["country"] == "CL"


def count_in_flight(client, method_name: str) -> list[int]:
    """Wrap a client method; the list returned holds the most calls seen at once."""
    lock, in_flight, peak = threading.Lock(), [0], [0]
    method = getattr(client, method_name)

    def counting(*args):
        with lock:
            in_flight[0] += 1
            peak[0] = max(peak[0], in_flight[0])
        try:
            return method(*args)
        finally:
            with lock:
                in_flight[0] -= 1

    setattr(client, method_name, counting)
    return peak


def test_writes_run_concurrently_over_reused_connections(sandbox, tmp_path):
    sandbox.set_faults(latency_ms=40)
    config = {"auth_token": sandbox.token, "api_url": sandbox.url, "match_field": "tax_id",
              "dead_letter_path": str(tmp_path / "rejects.jsonl"), "max_workers": 4}
    loader = Loader(Settings.parse(config), logging.getLogger("test"), "run")
    peak = count_in_flight(loader.client, "create_customer")
    loader.load([new_customer(n) for n in range(1, 25)])
    pools = loader.client.session.get_adapter(sandbox.url).poolmanager.pools
    [pool] = [pools[key] for key in pools.keys()]  # noqa: SIM118 - urllib3's container
    loader.finish()
    assert loader.summary.created == 24
    assert peak[0] > 1  # more than one write in flight at a time
    # keep-alive: 3 index pages, the closing count and 24 creates over at most a pool's
    # worth of connections
    assert pool.num_requests == 28 and 1 <= pool.num_connections <= 4 + 2


def _odd_customers() -> list[dict]:
    """Customers whose values stress the index's compact form."""
    return [
        {"id": "a", "tax_id": "1", "name": "Ñandú Ltda. 🦤", "email": None, "state": None,
         "country": {"id": "CL", "name": "Chile"}, "metadata": None, "phone": ""},
        {"id": "b", "tax_id": " 2 ", "metadata": {"n": 2**70, "nested": {"x": [1, None]}}},
        {"id": "c", "tax_id": "3", "metadata": {"ratio": 0.1, "nan": float("nan")}},
        {"id": "d", "tax_id": "3", "website": "https://d.example", "tax_settings": "x",
         "aggregations": {"balance": 10}, "contacts": [{"name": "z"}]},
    ]


def test_index_gives_back_what_diffing_needs():
    index = CustomerIndex(KeySpec.parse("tax_id"))
    customers = _odd_customers()
    index.add_all(customers)
    payloads = [{"name": "Ñandú Ltda. 🦤"}, {"email": None}, {"email": "x@y.z"},
                {"phone": ""}, {"phone": None}, {"state": None}, {"country": "CL"},
                {"metadata": {"n": 2**70}}, {"metadata": {"ratio": 0.1}},
                {"metadata": {"nested": {"x": [1, None]}}}, {"website": "https://d.example"},
                {"tax_settings": None}, {"metadata": {"new": 1}}]
    for customer in customers:
        held = index.get(customer["id"])
        assert held["id"] == customer["id"]
        for payload in payloads:
            assert changes_for(held, payload) == changes_for(customer_shape(customer), payload)
    assert [c["id"] for c in index.find("2")] == ["b"]
    assert [c["id"] for c in index.find("3")] == ["c", "d"]  # ambiguous: both, sorted
    assert index.get("zz") is None and index.find("zz") == [] and len(index) == 4


def test_index_replacing_a_customer_moves_its_key_and_values():
    index = CustomerIndex(KeySpec.parse("metadata.erp_id"))
    index.add({"id": "x", "metadata": {"erp_id": "E1"}, "phone": "1"})
    index.add({"id": "y", "metadata": {"erp_id": "E1"}})
    index.add({"id": "x", "metadata": {"erp_id": "E2"}, "phone": "2"})
    assert [c["id"] for c in index.find("E1")] == ["y"]
    [held] = index.find("E2")
    assert held["phone"] == "2" and held["metadata"] == {"erp_id": "E2"}
    assert changes_for(held, {"phone": "2", "metadata": {"erp_id": "E2"}}) == {}


def test_fast_validation_accepts_exactly_what_jsonschema_accepts():
    validator = PayloadValidator()
    assert validator._fast_check is not None  # the write schema is within its reach
    rng = random.Random(3)
    names = [*write_schema()["properties"], "unknown"]
    values = [None, "", " ", "CL", "cl", "CLP", "CLPX", "x@y", "nope", "CL-RM", "CL-RMX",
              "https://a.example", "é" * 6, "é" * 7, "a" * 32, "a" * 33, "a" * 64,
              "a" * 65, "a" * 200, "a" * 201, "a" * 254 + "@", "a" * 255, "a" * 256,
              "x\nCL", "CL\n", 0, 1.5, True, [], ["CL"], {}, {"k": "v"}, {"k": None}]
    for _ in range(4000):
        payload = {rng.choice(names): rng.choice(values) for _ in range(rng.randint(0, 4))}
        full = not any(validator._validator.iter_errors(payload))
        assert validator._fast_check(payload) == full, payload
        assert (validator.errors(payload) == []) == full


@pytest.mark.parametrize("links", [True, False])
def test_index_pages_are_read_concurrently_and_in_order(sandbox, tmp_path, monkeypatch, links):
    monkeypatch.setattr("piriod.client.PAGE_SIZE", 20)
    sandbox.set_faults(latency_ms=30, no_links=not links)
    config = {"auth_token": sandbox.token, "api_url": sandbox.url, "match_field": "tax_id",
              "dead_letter_path": str(tmp_path / "rejects.jsonl"), "max_workers": 4}
    loader = Loader(Settings.parse(config), logging.getLogger("test"), "run")
    peak = count_in_flight(loader.client, "_list_page")
    one_at_a_time = PiriodClient(sandbox.url, sandbox.token, pool_size=1)
    expected = [c["id"] for c in one_at_a_time.iter_customers({"ordering": "created"})]
    sandbox.reset_stats()
    ids = [c["id"] for c in loader.client.iter_customers({"ordering": "created"})]
    loader.finish()
    assert len(expected) == 250 and ids == expected  # all of them, in the same order
    assert peak[0] > 1
    assert sandbox.stats()["requests"] == 13  # 250 / 20 pages, none twice


class DictLookup:
    """Planning's view of the world, from a list of customers: no HTTP, no threads."""

    def __init__(self, spec, customers):
        self.index = CustomerIndex(spec)
        self.index.add_all(customers)
        self.waited: list = []

    def customer(self, customer_id):
        return self.index.get(customer_id)

    def customers_with(self, value):
        return self.index.find(value)

    def wait_for_key(self, key):
        self.waited.append(key)

    def wait_for_customer(self, customer_id):
        return False


def test_planning_alone_merges_matches_and_diffs():
    spec = KeySpec.parse("tax_id")
    lookup = DictLookup(spec, [{"id": "a", "tax_id": "1", "name": "A", "phone": "0"},
                               {"id": "b", "tax_id": "2"}, {"id": "c", "tax_id": "2"}])
    plan = Planner(spec, "upsert").plan([
        {"tax_id": "1", "phone": "1"}, {"tax_id": " 1 ", "name": "A2"},  # one patch
        {"id": "a", "address": "x"},                                      # same customer
        {"tax_id": "2", "name": "?"},                                     # ambiguous
        {"tax_id": "3", "name": "New"}, {"tax_id": "3", "phone": "3"},    # one create
        {"name": "no key"}, {"tax_id": "4", "email": "nope"},             # refused
        {"id": "zz"}, {"tax_id": "1", "phone": "1", "name": "A2"},        # not found; dup
    ], lookup)
    kinds = {action.key: (action.kind.value, action.changes or action.payload)
             for action in plan.actions}
    assert kinds == {("tax_id", "1"): ("update", {"phone": "1", "name": "A2", "address": "x"}),
                     ("tax_id", "3"): ("create", {"tax_id": "3", "name": "New", "phone": "3"})}
    reasons = sorted(refusal.rejection.reason for refusal in plan.refusals)
    assert reasons == ["ambiguous_match", "invalid", "missing_key", "not_found"]
    assert plan.merged == 4
    assert ("tax_id", "3") in lookup.waited  # a write in flight for the key is waited for


@pytest.mark.parametrize(("mode", "kinds", "refused"), [
    ("create_only", {"skip", "create"}, []),
    ("update_only", {"unchanged"}, ["not_found"]),
])
def test_planning_modes(mode, kinds, refused):
    spec = KeySpec.parse("tax_id")
    lookup = DictLookup(spec, [{"id": "a", "tax_id": "1", "name": "A"}])
    plan = Planner(spec, mode).plan([{"tax_id": "1", "name": "A" if refused else "B"},
                                     {"tax_id": "2", "name": "N"}], lookup)
    assert {action.kind.value for action in plan.actions} == kinds
    assert [refusal.rejection.reason for refusal in plan.refusals] == refused


def test_held_states_come_out_in_order_once_their_records_are_handled():
    from target_piriod.states import HeldStates

    states = HeldStates()
    assert states.ready(0) is None
    assert states.hold({"p": 0}, 0) and states.ready(0) == {"p": 0}  # nothing before it
    assert not states.hold({}, 3) and not states.hold(None, 3)  # never an empty STATE
    for position in (10, 20, 30):
        states.hold({"p": position}, position)
    assert states.ready(9) is None
    assert states.ready(25) == {"p": 20}  # 10 is superseded by 20; 30 waits
    assert len(states) == 1
    states.hold({"p": 30}, 35)  # the same STATE again: passed on once
    assert states.ready(40) == {"p": 30} and states.ready(40) is None


@pytest.mark.parametrize("kind", [Kind.UNCHANGED, Kind.SKIP])
def test_a_kind_that_writes_nothing_is_never_sent_as_a_patch(kind):
    """Only CREATE and UPDATE are writes: before Kind was closed, any other kind reaching
    the writer became a PATCH. Now it is refused before any request."""
    client = PiriodClient("http://127.0.0.1:9", "token", max_retries=0)
    writer = CustomerWriter(client, KeySpec.parse("tax_id"), logging.getLogger("test"))
    action = Action(kind, ("tax_id", "1"), [], {"name": "A"}, {"id": "cus_1", "name": "B"},
                    changes={"name": "A"})
    with pytest.raises(AssertionError, match=kind.value):
        writer.write(action)
    assert client.requests_sent == 0
    client.close()


def test_a_setting_of_the_wrong_type_is_named_by_the_sdk_schema_check():
    """Settings are parsed once, before the SDK's schema check: a value that cannot be
    read must still reach that check (which names it), not end in a traceback."""
    with pytest.raises(ConfigValidationError) as refused:
        TargetPiriod(config={"auth_token": "t", "api_url": "http://127.0.0.1:9",
                             "max_workers": "abc"}, validate_config=True)
    assert any("max_workers" in error for error in refused.value.errors)
