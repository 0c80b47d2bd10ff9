"""A tap killed mid-stream, resumed from the last STATE it emitted, loses nothing."""

from __future__ import annotations

import json
import signal
import subprocess

import pytest
from tap_helpers import TAP, run_tap, tap_config, write_json

# Correct with pages read one at a time and eight at a time.
pytestmark = pytest.mark.usefixtures("tap_workers")


def run_until_killed(sandbox, tmp_path, state: dict | None, kill_after: int) -> tuple[set, dict]:
    """Start the tap, read its stdout, SIGKILL it after ``kill_after`` records."""
    command = [*TAP, "--config", write_json(tmp_path, "cfg.json", tap_config(sandbox,
                                                                           page_size=10))]
    if state is not None:
        command += ["--state", write_json(tmp_path, "in-state.json", state)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                               text=True)
    ids, last_state = set(), state
    assert process.stdout is not None
    for line in process.stdout:
        message = json.loads(line)
        if message["type"] == "RECORD":
            ids.add(message["record"]["id"])
        elif message["type"] == "STATE":
            last_state = message["value"]
        if len(ids) >= kill_after:
            process.send_signal(signal.SIGKILL)
            break
    process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL, "the tap finished before it was killed"
    return ids, last_state or {}


def test_first_sync_killed_then_resumed(sandbox, tmp_path):
    sandbox.set_faults(latency_ms=20)  # slow pages so the kill lands mid-stream
    seen, state = run_until_killed(sandbox, tmp_path, None, kill_after=60)
    assert 60 <= len(seen) < 250
    sandbox.set_faults()
    resumed = run_tap(sandbox, tmp_path, state=state)
    assert resumed.returncode == 0, resumed.stderr
    assert seen | set(resumed.ids) == {c["id"] for c in sandbox.customers()}


def test_incremental_sync_killed_then_resumed(sandbox, tmp_path):
    first = run_tap(sandbox, tmp_path)
    changed = set(sandbox.touch(count=120, rng_seed=5))
    sandbox.set_faults(latency_ms=20)
    seen, state = run_until_killed(sandbox, tmp_path, first.states[-1], kill_after=30)
    assert len(seen) < len(changed)
    # The interrupted run must not have moved the bookmark past what it never read.
    bookmark = state["bookmarks"]["customers"].get("replication_key_value")
    assert bookmark == first.bookmark
    sandbox.set_faults()
    resumed = run_tap(sandbox, tmp_path, state=state)
    assert changed <= seen | set(resumed.ids)
