"""The plan and audit log (``plan_path``): a dry run's plan is what a real run then writes.

A mixed load (creates, updates, a merged duplicate, unchanged customers, rejects) is run
twice against the sandbox: first with ``dry_run``, which must send no write request and
leave a plan of one line per customer to create or update; then for real, whose audit log
(the same setting without ``dry_run``) must hold the same lines (keys, ids, changes),
order aside, and the sandbox must end holding exactly those changes and nothing else.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from target_helpers import messages_for, new_customer, run_target

from target_piriod.diff import customer_shape

REJECTS = 2  # the mixed load's records that planning refuses


def read_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def comparable(line: dict, *, dry_run: bool) -> str:
    """A plan line without what differs between runs (run_id, time; a create's new id)."""
    assert line["dry_run"] is dry_run
    kept = {name: line[name] for name in ("action", "key", "records", "changes")}
    kept["id"] = line["id"] if line["action"] == "update" else None
    return json.dumps(kept, sort_keys=True)


def write_shapes(sandbox) -> dict[str, dict]:
    return {c["id"]: customer_shape(c) for c in sandbox.customers()}


def mixed_load(sandbox) -> tuple[list[dict], dict[str, dict]]:
    """The records, and the seeded customers they name (by role)."""
    seeded = [c for c in sandbox.customers() if c["tax_id"]]
    counts = Counter(c["tax_id"] for c in seeded)
    email, phone, meta, merged, by_id, same1, same2 = \
        [c for c in seeded if counts[c["tax_id"]] == 1][:7]
    erp_only = {key: None for key in meta["metadata"] if key != "erp_id"}  # null: removed
    records = [
        {"tax_id": email["tax_id"], "email": "plan.review@example.com"},
        {"tax_id": phone["tax_id"], "phone": "+56 2 5555 0101",
         "website": "https://plan.example.com"},
        {"tax_id": meta["tax_id"], "metadata": {"erp_id": "PLAN-1", **erp_only}},
        {"tax_id": merged["tax_id"], "phone": "+56 2 5555 0202"},    # two records, one
        new_customer(1),
        {"tax_id": merged["tax_id"], "name": "Merged SpA"},         # ... one PATCH
        {"id": by_id["id"], "address": "Av. Plan 123"},             # matched by id
        {"tax_id": same1["tax_id"], "name": same1["name"]},         # unchanged
        {"tax_id": same2["tax_id"], "email": same2["email"],
         "country": (same2["country"] or {}).get("id")},            # unchanged (read shape)
        new_customer(2),
        new_customer(3, metadata={"erp_id": "NEW-3", "gone": None}),  # null: not sent
        new_customer(4, email="not-an-email"),                      # rejected: invalid
        {"name": "Sin Clave SpA", "email": "sin.clave@example.com"},  # rejected: no key
    ]
    roles = {"email": email, "phone": phone, "meta": meta, "merged": merged, "by_id": by_id}
    return records, roles


def test_the_dry_run_plan_is_what_the_real_run_writes(sandbox, tmp_path):
    records, roles = mixed_load(sandbox)
    before = write_shapes(sandbox)
    sandbox.reset_stats()

    # 1. The dry run: a plan, and no write request at all.
    plan_path = tmp_path / "review" / "plan.jsonl"
    dry = run_target(sandbox, tmp_path, messages_for(records), match_field="tax_id",
                     dry_run=True, plan_path=str(plan_path), max_rejects=REJECTS)
    assert dry.returncode == 0, dry.stderr
    stats = sandbox.stats()
    assert stats["writes"] == 0 and set(stats["by_method"]) == {"GET"}, stats
    assert write_shapes(sandbox) == before
    assert (dry.count("created"), dry.count("updated"), dry.count("unchanged"),
            dry.count("rejected")) == (3, 5, 2, REJECTS)
    assert f"plan: 8 customer(s) in {plan_path}" in dry.stderr  # the summary names it

    plan = read_lines(plan_path)
    assert len(plan) == 8 and len({line["run_id"] for line in plan}) == 1
    by_key = {line["key"]["value"]: line for line in plan}
    email = by_key[roles["email"]["tax_id"]]
    assert email["action"] == "update" and email["id"] == roles["email"]["id"]
    assert email["changes"] == {"email": {"from": roles["email"]["email"],
                                          "to": "plan.review@example.com"}}
    merged = by_key[roles["merged"]["tax_id"]]
    assert merged["records"] == 2
    assert merged["changes"]["name"] == {"from": roles["merged"]["name"], "to": "Merged SpA"}
    assert merged["changes"]["phone"]["to"] == "+56 2 5555 0202"
    meta = by_key[roles["meta"]["tax_id"]]["changes"]["metadata"]
    assert meta == {"from": customer_shape(roles["meta"])["metadata"],
                    "to": {"erp_id": "PLAN-1"}}
    by_id = by_key[roles["by_id"]["id"]]
    assert by_id["key"]["field"] == "id" and by_id["id"] == roles["by_id"]["id"]
    created = by_key["77.003.000-K"]
    assert created["action"] == "create" and created["id"] is None
    assert created["changes"]["metadata"] == {"from": None, "to": {"erp_id": "NEW-3"}}
    assert all(change["from"] is None for change in created["changes"].values())
    # Rejected records are in the dead-letter file only; unchanged customers nowhere.
    assert {r["reason"] for r in dry.rejects} == {"invalid", "missing_key"}
    assert all(r["dry_run"] for r in dry.rejects)
    assert "77.004.000-K" not in by_key
    assert {line["id"] for line in plan if line["action"] == "update"} == \
        {customer["id"] for customer in roles.values()}

    # 2. The real run: its audit log holds the plan's lines, order aside.
    audit_path = tmp_path / "audit.jsonl"
    real = run_target(sandbox, tmp_path, messages_for(records), match_field="tax_id",
                      plan_path=str(audit_path), max_rejects=REJECTS)
    assert real.returncode == 0, real.stderr
    assert f"audit log: 8 write(s) appended to {audit_path}" in real.stderr
    audit = read_lines(audit_path)
    assert Counter(comparable(line, dry_run=False) for line in audit) == \
        Counter(comparable(line, dry_run=True) for line in plan)
    assert sandbox.stats()["writes"] == 8

    # 3. The sandbox holds exactly what the audit log says was written.
    after = write_shapes(sandbox)
    written = {line["id"]: line for line in audit}
    assert all(line["id"] for line in audit)  # creates carry their new id
    assert set(after) == set(before) | {line["id"] for line in audit
                                        if line["action"] == "create"}
    assert len(after) == len(before) + 3
    for customer_id, shape in after.items():
        if customer_id not in written:
            assert shape == before[customer_id]
            continue
        line = written[customer_id]
        for name, change in line["changes"].items():
            assert shape[name] == change["to"], (customer_id, name)
            if line["action"] == "update":
                assert before[customer_id][name] == change["from"], (customer_id, name)
        untouched = set(shape) - set(line["changes"]) - {"id"}
        if line["action"] == "update":
            assert {n: shape[n] for n in untouched} == \
                {n: before[customer_id][n] for n in untouched}


def test_a_plan_is_replaced_and_an_audit_log_appended(sandbox, tmp_path):
    records = [new_customer(1), new_customer(2)]
    plan_path, audit_path = tmp_path / "plan.jsonl", tmp_path / "audit.jsonl"
    plan_path.write_text('{"stale": "an older plan"}\n')
    dry = run_target(sandbox, tmp_path, messages_for(records), match_field="tax_id",
                     dry_run=True, plan_path=str(plan_path))
    assert dry.returncode == 0, dry.stderr
    assert [line["key"]["value"] for line in read_lines(plan_path)] == \
        ["77.001.000-K", "77.002.000-K"]

    real = run_target(sandbox, tmp_path, messages_for(records), match_field="tax_id",
                      plan_path=str(audit_path))
    assert real.returncode == 0, real.stderr
    assert len(read_lines(audit_path)) == 2

    # Done: the next dry run plans nothing (an empty plan, not the old one), a re-run
    # writes nothing and adds nothing to the audit log.
    sandbox.reset_stats()
    again = run_target(sandbox, tmp_path, messages_for(records), match_field="tax_id",
                       dry_run=True, plan_path=str(plan_path))
    assert again.returncode == 0 and plan_path.read_text() == ""
    assert f"plan: 0 customer(s) in {plan_path}" in again.stderr
    rerun = run_target(sandbox, tmp_path, messages_for(records), match_field="tax_id",
                       plan_path=str(audit_path))
    assert rerun.returncode == 0 and rerun.count("unchanged") == 2
    assert "audit log: 0 write(s)" in rerun.stderr
    assert len(read_lines(audit_path)) == 2
    assert sandbox.stats()["writes"] == 0


def test_what_the_api_refuses_is_planned_but_not_in_the_audit_log(sandbox, tmp_path):
    seeded = sandbox.customers()[7]
    foreign = "AR-C" if seeded["country"]["id"] != "AR" else "CL-RM"
    records = [new_customer(1, country="CL", state="AR-C"),  # POST answered 400
               {"id": seeded["id"], "state": foreign},       # PATCH answered 400
               new_customer(2)]
    plan_path, audit_path = tmp_path / "plan.jsonl", tmp_path / "audit.jsonl"
    dry = run_target(sandbox, tmp_path, messages_for(records), dry_run=True,
                     match_field="tax_id", plan_path=str(plan_path))
    assert dry.returncode == 0, dry.stderr
    assert len(read_lines(plan_path)) == 3  # a dry run cannot know what the API refuses

    real = run_target(sandbox, tmp_path, messages_for(records), match_field="tax_id",
                      plan_path=str(audit_path), max_rejects=2)
    assert real.returncode == 0, real.stderr
    [line] = read_lines(audit_path)
    assert line["key"]["value"] == "77.002.000-K" and line["action"] == "create"
    assert {r["reason"] for r in real.rejects if not r["dry_run"]} == {"api_rejected"}


def test_without_plan_path_there_is_no_file(sandbox, tmp_path):
    run = run_target(sandbox, tmp_path, messages_for([new_customer(1)]), dry_run=True,
                     match_field="tax_id")
    assert run.returncode == 0, run.stderr
    assert "plan:" not in run.stderr and "audit log" not in run.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["target-config.json"]
