"""Rejected records: dead-lettered with their key and reason, the load goes on, exit status."""

from __future__ import annotations

import pytest
from target_helpers import (
    assert_exactly_once,
    by_field,
    messages_for,
    new_customer,
    run_target,
)

from piriod_sandbox import SandboxProcess

SECRET = "tok-SECRET-5b0c1f9e7d"  # a test token, grepped for in every output


def mixed_load(sandbox) -> list[dict]:
    seeded = sandbox.customers()
    return [
        new_customer(1),
        new_customer(2, email="not-an-email"),              # fails the schema: no request
        new_customer(3, state="AR-C"),                      # the API answers 400 (not CL's)
        new_customer(4, name=None),                         # the API answers 400 (POST)
        {"id": "doesNotExist", "name": "Gone"},             # 404: deleted
        new_customer(5, country={"name": "Chile"}),         # an object with no code
        {**seeded[0], "phone": "+56 2 7777 7777"},          # a normal patch
        new_customer(6),
    ]


def test_rejects_are_dead_lettered_and_the_load_goes_on(sandbox, tmp_path):
    run = run_target(sandbox, tmp_path, messages_for(mixed_load(sandbox)), match_field="tax_id")
    assert run.returncode != 0
    assert (run.count("created"), run.count("updated"), run.count("rejected")) == (2, 1, 5)
    assert_exactly_once(sandbox, "tax_id", ["77.001.000-K", "77.006.000-K"])
    assert sandbox.customers()[0]["phone"] == "+56 2 7777 7777"

    rejects = {r["key"]["value"] if r["key"] else None: r for r in run.rejects}
    assert rejects["77.002.000-K"]["reason"] == "invalid"
    assert "email" in rejects["77.002.000-K"]["message"]
    assert rejects["77.002.000-K"]["status"] is None  # never sent
    assert rejects["77.003.000-K"]["reason"] == "api_rejected"
    assert rejects["77.003.000-K"]["status"] == 400
    assert "state" in rejects["77.003.000-K"]["error"]  # the API's own error body
    assert rejects["77.004.000-K"]["error"] == {"name": ["This field may not be null."]}
    assert rejects["doesNotExist"]["reason"] == "not_found"
    assert rejects["77.005.000-K"]["reason"] == "invalid"
    assert rejects["77.003.000-K"]["record"]["state"] == "AR-C"  # the record as received
    assert all(r["run_id"] == rejects["doesNotExist"]["run_id"] for r in run.rejects)

    # The message names how many and where; no traceback for an expected condition.
    assert "5 record(s) rejected" in run.stderr and str(run.dead_letter_path) in run.stderr
    assert "Traceback" not in run.stderr


def test_max_rejects_allows_a_load_with_some_rejects(sandbox, tmp_path):
    run = run_target(sandbox, tmp_path, messages_for(mixed_load(sandbox)),
                     match_field="tax_id", max_rejects=5)
    assert run.returncode == 0, run.stderr
    assert run.count("rejected") == 5 and len(run.rejects) == 5


def test_state_advances_past_dead_lettered_records(sandbox, tmp_path):
    run = run_target(sandbox, tmp_path, messages_for(mixed_load(sandbox)),
                     match_field="tax_id", max_rejects=5)
    assert run.states == [{"loaded": 8}]


def test_ambiguous_matches_are_rejected_not_guessed(sandbox, tmp_path):
    first, second = sandbox.customers()[:2]
    sandbox.touch(ids=[second["id"]], changes={"tax_id": first["tax_id"]})
    record = {"tax_id": first["tax_id"], "name": "Which one?"}
    run = run_target(sandbox, tmp_path, messages_for([record]), match_field="tax_id",
                     max_rejects=1)
    assert run.returncode == 0, run.stderr
    [reject] = run.rejects
    assert reject["reason"] == "ambiguous_match"
    assert first["id"] in reject["message"] and second["id"] in reject["message"]
    assert sandbox.stats()["writes"] == 0


def test_records_without_a_key_are_rejected_rather_than_duplicated(sandbox, tmp_path):
    keyless = {"name": "No key SpA", "email": "nokey@example.com"}
    for match_field in ("tax_id", "id"):
        run = run_target(sandbox, tmp_path, messages_for([keyless]), match_field=match_field,
                         max_rejects=1)
        assert run.returncode == 0, run.stderr
        assert run.rejects[-1]["reason"] == "missing_key"
    assert sandbox.stats()["writes"] == 0


def test_the_token_never_leaks(tmp_path):
    with SandboxProcess(50, token=SECRET) as server:
        server.set_faults(script=[{"nth": 2, "fault": "drop_after", "method": "POST"},
                                  {"nth": 3, "fault": "500", "method": "POST"}])
        records = [new_customer(n) for n in range(1, 5)] + [new_customer(9, email="bad")]
        run = run_target(server, tmp_path, messages_for(records), match_field="tax_id")
        assert run.returncode != 0  # one reject, max_rejects=0
        assert run.count("created") == 4
        assert_exactly_once(server, "tax_id", [f"77.{n:03d}.000-K" for n in range(1, 5)])
        outputs = [run.stdout, run.stderr, run.dead_letter_path.read_text()]

        wrong = run_target(server, tmp_path, messages_for(records),
                           auth_token="tok-SECRET-wrong-one", match_field="tax_id")
        assert wrong.returncode != 0
        assert "401" in wrong.stderr and "Traceback" not in wrong.stderr
        outputs += [wrong.stdout, wrong.stderr]
    for text in outputs:
        assert "tok-SECRET" not in text


@pytest.mark.parametrize("mode", ["upsert", "update_only"])
def test_patch_rejected_by_the_api_is_dead_lettered(sandbox, tmp_path, mode):
    seeded = sandbox.customers()[7]
    foreign = "AR-C" if seeded["country"]["id"] != "AR" else "CL-RM"
    records = [{"id": seeded["id"], "state": foreign},  # another country's state: 400
               {"id": sandbox.customers()[8]["id"], "phone": "+56 9 8"}]
    run = run_target(sandbox, tmp_path, messages_for(records), mode=mode, max_rejects=1)
    assert run.returncode == 0, run.stderr
    [reject] = run.rejects
    assert reject["reason"] == "api_rejected" and "state" in reject["error"]
    assert by_field(sandbox, "id")[seeded["id"]]["state"] == seeded["state"]
    assert run.count("updated") == 1
