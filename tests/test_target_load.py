"""target-piriod end to end against the sandbox: create, match, modes, diffing, dry run."""

from __future__ import annotations

import json
import subprocess

from target_helpers import (
    TARGET,
    assert_exactly_once,
    by_field,
    messages_for,
    new_customer,
    record_message,
    run_target,
    schema_message,
    state_message,
)


def writes(sandbox) -> dict:
    stats = sandbox.stats()
    return {"POST": stats["by_method"].get("POST", 0), "PATCH": stats["by_method"].get("PATCH", 0)}


def test_creates_unmatched_records_and_a_rerun_writes_nothing(sandbox, tmp_path):
    records = [new_customer(n) for n in range(1, 6)]
    first = run_target(sandbox, tmp_path, messages_for(records), match_field="tax_id")
    assert first.returncode == 0, first.stderr
    assert first.count("created") == 5 and first.count("rejected") == 0
    assert writes(sandbox) == {"POST": 5, "PATCH": 0}
    created = by_field(sandbox, "tax_id")["77.001.000-K"]
    assert created["country"]["id"] == "CL" and created["state"]["id"] == "CL-RM"
    assert created["metadata"] == {"erp_id": "NEW-00001"}
    assert len(sandbox.customers()) == 255

    sandbox.reset_stats()
    second = run_target(sandbox, tmp_path, messages_for(records), match_field="tax_id")
    assert second.returncode == 0, second.stderr
    assert second.count("unchanged") == 5 and second.count("created") == 0
    assert sandbox.stats()["writes"] == 0
    assert len(sandbox.customers()) == 255


def test_patch_by_id_sends_only_what_changed(sandbox, tmp_path):
    customers = sandbox.customers()
    target, untouched = customers[0], customers[1]
    edited = {**target, "phone": "+56 2 1111 2222", "aggregations": {"balance": -1}}
    same = dict(untouched)  # read shape, objects for country/state: nothing to do
    run = run_target(sandbox, tmp_path, messages_for([edited, same]))
    assert run.returncode == 0, run.stderr
    assert (run.count("updated"), run.count("unchanged")) == (1, 1)
    assert writes(sandbox) == {"POST": 0, "PATCH": 1}
    after = {c["id"]: c for c in sandbox.customers()}
    assert after[target["id"]]["phone"] == "+56 2 1111 2222"
    assert after[target["id"]]["aggregations"] == target["aggregations"]  # read-only
    assert after[untouched["id"]]["updated"] == untouched["updated"]  # no request at all


def test_match_by_tax_id_updates_the_existing_customer(sandbox, tmp_path):
    seeded = sandbox.customers()[10]
    record = {"tax_id": seeded["tax_id"], "website": "https://renamed.example"}
    run = run_target(sandbox, tmp_path, messages_for([record]), match_field="tax_id",
                     mode="upsert")
    assert run.returncode == 0, run.stderr
    assert run.count("updated") == 1 and writes(sandbox) == {"POST": 0, "PATCH": 1}
    after = by_field(sandbox, "tax_id")[seeded["tax_id"]]
    assert after["website"] == "https://renamed.example"
    assert after["name"] == seeded["name"]  # a sparse record changes only what it has
    assert len(sandbox.customers()) == 250


def test_match_by_email_ignores_case(sandbox, tmp_path):
    seeded = sandbox.customers()[20]
    record = {"email": seeded["email"].upper(), "name": seeded["name"],
              "address": "Nueva 123"}
    run = run_target(sandbox, tmp_path, messages_for([record]), match_field="email")
    assert run.returncode == 0, run.stderr
    assert run.count("updated") == 1 and run.count("created") == 0
    assert len(sandbox.customers()) == 250
    assert sandbox.customers()[20]["address"] == "Nueva 123"


def test_match_by_metadata_key_merges_metadata(sandbox, tmp_path):
    seeded = sandbox.customers()[4]
    erp_id = seeded["metadata"]["erp_id"]
    records = [{"metadata": {"erp_id": erp_id, "crm": "hubspot"}, "phone": "+56 9 0"},
               new_customer(1, metadata={"erp_id": "NEW-1"})]
    run = run_target(sandbox, tmp_path, messages_for(records), match_field="metadata.erp_id")
    assert run.returncode == 0, run.stderr
    assert (run.count("updated"), run.count("created")) == (1, 1)
    after = by_field(sandbox, "metadata.erp_id")
    assert after[erp_id]["id"] == seeded["id"]
    # The API replaces metadata as a whole: the target sent the merged object.
    assert after[erp_id]["metadata"] == {**seeded["metadata"], "crm": "hubspot"}
    sandbox.reset_stats()
    again = run_target(sandbox, tmp_path, messages_for(records), match_field="metadata.erp_id")
    assert again.count("unchanged") == 2 and sandbox.stats()["writes"] == 0


def test_create_only_never_patches(sandbox, tmp_path):
    seeded = sandbox.customers()[0]
    records = [{"tax_id": seeded["tax_id"], "name": "Changed"}, new_customer(1)]
    run = run_target(sandbox, tmp_path, messages_for(records), match_field="tax_id",
                     mode="create_only")
    assert run.returncode == 0, run.stderr
    assert (run.count("created"), run.count("skipped"), run.count("updated")) == (1, 1, 0)
    assert writes(sandbox) == {"POST": 1, "PATCH": 0}
    assert by_field(sandbox, "tax_id")[seeded["tax_id"]]["name"] == seeded["name"]


def test_update_only_never_creates_and_reports_unmatched(sandbox, tmp_path):
    seeded = sandbox.customers()[0]
    records = [{"tax_id": seeded["tax_id"], "name": "Changed"}, new_customer(1)]
    run = run_target(sandbox, tmp_path, messages_for(records), match_field="tax_id",
                     mode="update_only", max_rejects=1)
    assert run.returncode == 0, run.stderr
    assert (run.count("updated"), run.count("created"), run.count("rejected")) == (1, 0, 1)
    assert writes(sandbox) == {"POST": 0, "PATCH": 1}
    [reject] = run.rejects
    assert reject["reason"] == "not_found" and reject["key"]["value"] == "77.001.000-K"


def test_dry_run_writes_nothing_and_reports_the_plan(sandbox, tmp_path):
    customers = sandbox.customers()
    records = [new_customer(1), new_customer(2),
               {**customers[0], "name": "Would change"}, customers[1],
               new_customer(3, email="not-an-email"),
               new_customer(1, phone="+56 9 1")]  # same key as the first: one create
    run = run_target(sandbox, tmp_path, messages_for(records), match_field="tax_id",
                     dry_run=True, max_rejects=1)
    assert run.returncode == 0, run.stderr
    assert sandbox.stats()["by_method"].keys() == {"GET"}
    counts = {k: run.count(k) for k in ("created", "updated", "unchanged", "rejected")}
    assert counts == {"created": 2, "updated": 1, "unchanged": 1, "rejected": 1}
    assert "(dry run" in run.stderr
    assert run.rejects[0]["dry_run"] is True


def test_duplicates_within_a_load_become_one_customer_later_values_winning(sandbox, tmp_path):
    records = []
    for round_ in range(3):
        records += [new_customer(n, phone=f"+56 9 {round_}") for n in range(1, 21)]
    run = run_target(sandbox, tmp_path, messages_for(records), match_field="tax_id",
                     max_workers=8)
    assert run.returncode == 0, run.stderr
    assert run.count("created") == 20
    assert sandbox.stats()["creates"] == 20
    assert_exactly_once(sandbox, "tax_id", [f"77.{n:03d}.000-K" for n in range(1, 21)])
    assert {c["phone"] for c in sandbox.customers()[-20:]} == {"+56 9 2"}


def test_duplicates_across_batches_match_what_the_run_created(sandbox, tmp_path):
    records = [new_customer(n % 7) for n in range(30)]
    run = run_target(sandbox, tmp_path, messages_for(records), match_field="tax_id",
                     batch_size_rows=4)
    assert run.returncode == 0, run.stderr
    assert run.count("created") == 7 and sandbox.stats()["creates"] == 7


def test_two_keys_for_one_customer_make_one_patch(sandbox, tmp_path):
    seeded = sandbox.customers()[3]
    records = [{"id": seeded["id"], "phone": "+1"}, {"tax_id": seeded["tax_id"], "phone": "+2"}]
    run = run_target(sandbox, tmp_path, messages_for(records), match_field="tax_id")
    assert run.returncode == 0, run.stderr
    assert writes(sandbox) == {"POST": 0, "PATCH": 1}
    assert sandbox.customers()[3]["phone"] == "+2"


def test_state_is_emitted_as_batches_are_written(sandbox, tmp_path):
    messages = [schema_message()]
    for n in range(1, 31):
        messages.append(record_message(new_customer(n)))
        if n % 5 == 0:
            messages.append(state_message({"position": n}))
    run = run_target(sandbox, tmp_path, messages, match_field="tax_id", batch_size_rows=10)
    assert run.returncode == 0, run.stderr
    positions = [state["position"] for state in run.states]
    assert positions == sorted(positions) and positions[-1] == 30
    assert len(positions) > 1  # state advanced during the load, not only at the end


def test_other_streams_are_an_error_unless_mapped(sandbox, tmp_path):
    records = [new_customer(1)]
    refused = run_target(sandbox, tmp_path, messages_for(records, stream="crm_accounts"),
                         match_field="tax_id")
    assert refused.returncode != 0
    assert "crm_accounts" in refused.stderr and "stream_maps" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert sandbox.stats()["writes"] == 0

    mapped = run_target(sandbox, tmp_path, messages_for(records, stream="crm_accounts"),
                        match_field="tax_id",
                        stream_maps={"crm_accounts": {"__alias__": "customers"}})
    assert mapped.returncode == 0, mapped.stderr
    assert mapped.count("created") == 1


def test_bad_match_field_is_a_config_error(sandbox, tmp_path):
    run = run_target(sandbox, tmp_path, messages_for([new_customer(1)]), match_field="country")
    assert run.returncode != 0
    assert "match_field" in run.stderr
    assert sandbox.stats()["requests"] == 0


def test_summary_line_and_metric(sandbox, tmp_path):
    run = run_target(sandbox, tmp_path, messages_for([new_customer(1)]), match_field="tax_id")
    assert run.returncode == 0, run.stderr
    assert set(run.summary) >= {"created", "updated", "unchanged", "rejected", "seconds"}
    metric_lines = [line for line in run.stderr.splitlines() if "target_piriod_summary" in line]
    assert metric_lines and "METRIC" in metric_lines[0]
    point = json.loads(metric_lines[0].split("METRIC: ", 1)[1])
    assert point["value"]["created"] == 1


def test_about_documents_the_settings():
    done = subprocess.run([*TARGET, "--about", "--format", "json"], capture_output=True,
                          text=True, check=True)
    settings = json.loads(done.stdout)["settings"]["properties"]
    for name in ("auth_token", "api_url", "match_field", "mode", "dry_run", "dead_letter_path",
                 "max_rejects", "max_workers", "request_timeout", "max_retries", "user_agent"):
        assert settings[name].get("description"), name
    assert settings["auth_token"]["secret"] is True
    assert settings["mode"]["enum"] == ["upsert", "create_only", "update_only"]
    assert settings["api_url"]["default"] == "https://api.piriod.com"
    assert settings["match_field"]["default"] == "id"
