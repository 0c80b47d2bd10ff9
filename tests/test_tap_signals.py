"""SIGTERM and SIGINT: the tap stops between pages, writes no torn line and moves no bookmark."""

from __future__ import annotations

import json
import signal
import subprocess
import time

import pytest
from tap_helpers import TAP, run_tap, tap_config, write_json


def start_tap(sandbox, tmp_path, state: dict) -> subprocess.Popen:
    config = write_json(tmp_path, "config.json",
                        tap_config(sandbox, page_size=20, max_workers=2))
    return subprocess.Popen([*TAP, "--config", config, "--state",
                             write_json(tmp_path, "state.json", state)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def finish(process: subprocess.Popen) -> tuple[bytes, bytes]:
    """Read the rest of stdout through the same buffered reader (communicate() would skip
    what readline() had buffered), then stderr."""
    rest = process.stdout.read()
    stderr = process.stderr.read()
    process.wait(timeout=60)
    return rest, stderr


def wait_for_records(process: subprocess.Popen, count: int) -> list[bytes]:
    lines = []
    while sum(b'"type":"RECORD"' in line for line in lines) < count:
        line = process.stdout.readline()
        assert line, process.stderr.read().decode()[-2000:]
        lines.append(line)
    return lines


def wait_for_stderr(process: subprocess.Popen, text: bytes) -> bytes:
    """Read stderr up to the line holding ``text``; return what was read."""
    read = b""
    while True:
        line = process.stderr.readline()
        assert line, (read + process.stderr.read()).decode()[-2000:]
        read += line
        if text in line:
            return read


@pytest.mark.parametrize(("signum", "exit_code"), [(signal.SIGTERM, 143),
                                                    (signal.SIGINT, 130)])
def test_a_signal_stops_between_pages_and_moves_nothing(sandbox, tmp_path, signum, exit_code):
    bookmark = "2025-01-01T00:00:00.000000+00:00"
    state = {"bookmarks": {"customers": {"replication_key": "updated",
                                         "replication_key_value": bookmark}}}
    sandbox.set_faults(latency_ms=150)
    process = start_tap(sandbox, tmp_path, state)
    lines = wait_for_records(process, 5)
    process.send_signal(signum)
    rest, stderr = finish(process)
    lines += rest.splitlines(keepends=True)
    messages = [json.loads(line) for line in lines]  # every line whole: none torn
    records = [m for m in messages if m["type"] == "RECORD"]
    assert process.returncode == exit_code, stderr.decode()[-2000:]
    assert len(records) % 20 == 0, "stops at a page boundary"
    assert len(records) < len(sandbox.customers())
    for message in messages:
        if message["type"] == "STATE":
            assert message["value"]["bookmarks"]["customers"].get(
                "replication_key_value", bookmark) == bookmark
    text = stderr.decode()
    assert f"stopped by {signal.Signals(signum).name}" in text
    assert "Traceback" not in text

    sandbox.set_faults()
    rerun = run_tap(sandbox, tmp_path, state=state)  # from the same state: completes
    expected = {c["id"] for c in sandbox.customers() if c["updated"] >= "2025-01-01"}
    assert set(rerun.ids) == expected


def test_a_second_signal_exits_at_once(sandbox, tmp_path):
    # Page 1 takes 8 s: the first signal waits for it (a request in flight finishes), the
    # second does not. The signals are sent on cue, not after a pause: the first once the
    # sandbox holds page 1's request, the second once the tap says it took the first.
    sandbox.reset_stats()
    sandbox.set_faults(slow_ms=8000, script=[{"nth": 1, "fault": "slow"}])
    config = write_json(tmp_path, "config.json", tap_config(
        sandbox, page_size=20, max_workers=1, request_timeout=30))
    process = subprocess.Popen([*TAP, "--config", config], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE)
    while sandbox.stats()["requests"] < 1:  # waiting for a condition, not for a time
        assert process.poll() is None, process.stderr.read().decode()[-2000:]
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    seen = wait_for_stderr(process, b"SIGTERM received: stopping after the page")
    process.send_signal(signal.SIGTERM)
    rest, stderr = finish(process)
    stderr = seen + stderr
    assert process.returncode == 143, stderr.decode()[-2000:]
    assert b"second SIGTERM" in stderr
    assert b"Traceback" not in stderr
    assert all(b"replication_key_value" not in line for line in rest.splitlines())
