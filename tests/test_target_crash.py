"""Kill the target mid-load: state never got ahead of the writes, and a re-run finishes the job."""

from __future__ import annotations

import json
import signal
import subprocess
import time

from target_helpers import (
    TARGET,
    assert_exactly_once,
    numbered_load,
    run_target,
    target_config,
    write_config,
    write_input,
)

COUNT = 200


def wait_for(sandbox, process: subprocess.Popen | None, counter: str, at_least: int) -> None:
    """Poll the sandbox's counters (``creates`` or ``POST``) until one reaches a value."""
    deadline = time.monotonic() + 60
    while True:
        stats = sandbox.stats()
        if {**stats, **stats["by_method"]}.get(counter, 0) >= at_least:
            return
        assert process is None or process.poll() is None, "the target finished too soon"
        assert time.monotonic() < deadline, f"{counter} never reached {at_least}"
        time.sleep(0.02)


def kill_after_creates(sandbox, process: subprocess.Popen, creates: int) -> None:
    wait_for(sandbox, process, "creates", creates)
    process.send_signal(signal.SIGKILL)


def test_sigkill_mid_load_then_rerun_ends_with_each_customer_exactly_once(sandbox, tmp_path):
    messages = numbered_load(COUNT)
    config = target_config(sandbox, tmp_path, match_field="tax_id", batch_size_rows=20,
                           max_workers=2)
    command = [*TARGET, "--config", str(write_config(tmp_path, config)),
               "--input", str(write_input(tmp_path, messages))]
    sandbox.set_faults(latency_ms=25)
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                               text=True)
    kill_after_creates(sandbox, process, 70)
    stdout, _ = process.communicate(timeout=30)
    assert process.returncode == -signal.SIGKILL
    time.sleep(0.3)  # requests that were in flight at the kill are committed by now
    sandbox.set_faults()

    created_before = sandbox.stats()["creates"]
    assert 70 <= created_before < COUNT, "the kill did not land mid-load"
    states = [json.loads(line) for line in stdout.splitlines() if line.strip()]
    assert states, "no state was emitted before the kill"
    position = states[-1]["position"]
    # Every record before the last emitted STATE was written: state never ran ahead.
    assert_exactly_once(sandbox, "tax_id", [f"77.{n:03d}.000-K" for n in range(1, position + 1)])

    rerun = run_target(sandbox, tmp_path, messages, match_field="tax_id", batch_size_rows=20)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert rerun.count("created") == COUNT - created_before
    assert rerun.count("unchanged") == created_before
    assert len(sandbox.customers()) == 250 + COUNT
    assert_exactly_once(sandbox, "tax_id", [f"77.{n:03d}.000-K" for n in range(1, COUNT + 1)])
    assert rerun.states[-1] == {"position": COUNT}


def test_a_post_in_flight_at_the_kill_is_matched_by_the_rerun(sandbox, tmp_path):
    """The server commits a POST after the client died: the re-run patches, never re-creates."""
    messages = numbered_load(COUNT)[:12]  # SCHEMA, 10 records, STATE
    config = target_config(sandbox, tmp_path, match_field="metadata.erp_id", max_workers=1)
    command = [*TARGET, "--config", str(write_config(tmp_path, config)),
               "--input", str(write_input(tmp_path, messages))]
    sandbox.set_faults(slow_ms=1500, script=[{"nth": 3, "fault": "slow", "method": "POST"}])
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(sandbox, process, "POST", 3)  # the third POST is in the server's hands
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    wait_for(sandbox, None, "creates", 3)  # ... and the server commits it after the kill
    sandbox.set_faults()
    assert sandbox.stats()["creates"] == 3

    rerun = run_target(sandbox, tmp_path, messages, match_field="metadata.erp_id")
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert (rerun.count("created"), rerun.count("unchanged")) == (7, 3)
    assert_exactly_once(sandbox, "metadata.erp_id", [f"NEW-{n:05d}" for n in range(1, 11)])


def test_a_state_waits_for_a_stuck_write_while_later_records_are_written(sandbox, tmp_path):
    """No barrier at a STATE: later batches are written while an earlier write is stuck,
    and no STATE after the stuck record comes out until it is written."""
    messages = numbered_load(COUNT)[:67]  # SCHEMA, records 1-60, a STATE after every 10
    config = target_config(sandbox, tmp_path, match_field="tax_id", batch_size_rows=10,
                           max_workers=2, request_timeout=30)
    command = [*TARGET, "--config", str(write_config(tmp_path, config)),
               "--input", str(write_input(tmp_path, messages))]
    # One POST of the second batch (records 11-20) takes 8 s; the others are quick.
    sandbox.set_faults(slow_ms=8000, script=[{"nth": 15, "fault": "slow", "method": "POST"}])
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                               text=True)
    wait_for(sandbox, process, "creates", 29)  # records 1-30 but the stuck one: written
    assert sandbox.stats()["creates"] == 29, "the stuck write finished too soon"
    process.send_signal(signal.SIGKILL)
    stdout, _ = process.communicate(timeout=30)
    states = [json.loads(line) for line in stdout.splitlines() if line.strip()]
    assert states == [{"position": 10}]  # 20 and 30 are held behind the stuck record

    wait_for(sandbox, None, "creates", 30)  # the server commits the stuck POST
    sandbox.set_faults()
    rerun = run_target(sandbox, tmp_path, messages, match_field="tax_id", batch_size_rows=10)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert (rerun.count("created"), rerun.count("unchanged")) == (30, 30)
    assert_exactly_once(sandbox, "tax_id", [f"77.{n:03d}.000-K" for n in range(1, 61)])
    assert rerun.states[-1] == {"position": 60}
