"""SIGTERM/SIGINT to a real target-piriod: no STATE past unwritten records, exit 128 + n.

Each test sends the signal at one moment of a load against the sandbox (reading the
index, writing batches, waiting out a 429, waiting for input, a second signal while a
write is stuck), then checks the exit code, the ``(interrupted)`` summary, that every
record before each STATE emitted is in the sandbox exactly once, and that a re-run of the
same input completes the load with nothing duplicated.
"""

from __future__ import annotations

import json
import signal
import subprocess
import threading
import time

import pytest
from target_helpers import (
    SUMMARY,
    TARGET,
    assert_exactly_once,
    numbered_load,
    run_target,
    target_config,
    write_config,
    write_input,
)

COUNT = 200
SETTINGS = {"match_field": "tax_id", "batch_size_rows": 20, "max_workers": 2}


def tax_ids(last: int) -> list[str]:
    return [f"77.{n:03d}.000-K" for n in range(1, last + 1)]


class Target:
    """A target-piriod process; its stderr is read as it comes (to see a signal handled)."""

    def __init__(self, sandbox, tmp_path, messages: list[dict] | None, **settings) -> None:
        config = write_config(tmp_path, target_config(sandbox, tmp_path,
                                                      **{**SETTINGS, **settings}))
        command = [*TARGET, "--config", str(config)]
        if messages is not None:
            command += ["--input", str(write_input(tmp_path, messages))]
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                        text=True)
        self.stderr: list[str] = []
        self._reader = threading.Thread(target=self._read_stderr, daemon=True)
        self._reader.start()

    def _read_stderr(self) -> None:
        for line in self.process.stderr:
            self.stderr.append(line)

    def wait_for_stderr(self, text: str) -> None:
        deadline = time.monotonic() + 60
        while not any(text in line for line in self.stderr):
            assert time.monotonic() < deadline, f"no {text!r} on stderr"
            time.sleep(0.02)

    def stop(self, signum: int = signal.SIGTERM) -> list[dict]:
        """Send a signal, wait for the exit; return the STATEs emitted."""
        self.process.send_signal(signum)
        return self.finish()

    def finish(self) -> list[dict]:
        stdout = self.process.stdout.read()
        self.process.wait(timeout=60)
        self._reader.join(timeout=10)
        return [json.loads(line) for line in stdout.splitlines() if line.strip()]


def wait_until(sandbox, target: Target, counter: str, at_least: int) -> None:
    """Poll the sandbox's counters (``creates``, ``GET``, ``429``...) until one is reached."""
    deadline = time.monotonic() + 60
    while True:
        stats = sandbox.stats()
        if {**stats, **stats["by_method"], **stats["by_status"]}.get(counter, 0) >= at_least:
            return
        assert target.process.poll() is None, "the target finished too soon"
        assert time.monotonic() < deadline, f"{counter} never reached {at_least}"
        time.sleep(0.02)


def assert_interrupted(sandbox, target: Target, states: list[dict], signum: int) -> None:
    """Exit 128 + n, an (interrupted) summary, and every STATE's records written once."""
    stderr = "".join(target.stderr)
    assert target.process.returncode == 128 + signum, stderr[-3000:]
    summaries = SUMMARY.findall(stderr)
    assert summaries and summaries[-1].endswith("(interrupted)"), stderr[-3000:]
    assert "Traceback" not in stderr
    positions = [state["position"] for state in states]
    assert positions == sorted(positions)
    if positions:
        assert_exactly_once(sandbox, "tax_id", tax_ids(positions[-1]))


def rerun_completes(sandbox, tmp_path, messages: list[dict], count: int = COUNT) -> None:
    """The same input again: every customer exactly once, the last STATE passed on."""
    time.sleep(0.3)  # a request in flight when the target exited is committed by now
    sandbox.set_faults()
    before = sandbox.stats()["creates"]
    rerun = run_target(sandbox, tmp_path, messages, **SETTINGS)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert rerun.count("created") == count - before
    assert rerun.count("created") + rerun.count("unchanged") == count
    assert_exactly_once(sandbox, "tax_id", tax_ids(count))
    assert rerun.states[-1] == {"position": count}


def test_sigterm_while_the_index_is_read(sandbox, tmp_path):
    messages = numbered_load(COUNT)
    sandbox.set_faults(latency_ms=300)  # three index pages, each slow
    target = Target(sandbox, tmp_path, messages)
    wait_until(sandbox, target, "GET", 1)
    states = target.stop()
    assert_interrupted(sandbox, target, states, signal.SIGTERM)
    assert states == []  # no record was written: no STATE after one
    assert sandbox.stats()["writes"] == 0
    rerun_completes(sandbox, tmp_path, messages)


def test_sigterm_while_batches_are_planned_and_written(sandbox, tmp_path):
    messages = numbered_load(COUNT)
    sandbox.set_faults(latency_ms=25)
    target = Target(sandbox, tmp_path, messages)
    wait_until(sandbox, target, "creates", 50)
    states = target.stop()
    assert_interrupted(sandbox, target, states, signal.SIGTERM)
    assert states and states[-1]["position"] >= 40  # what was written is passed on
    assert sandbox.stats()["creates"] < COUNT, "the signal did not land mid-load"
    rerun_completes(sandbox, tmp_path, messages)


def test_sigterm_while_waiting_out_a_429(sandbox, tmp_path):
    messages = numbered_load(COUNT)
    # The 30th POST is throttled for two minutes: every write waits on the shared gate.
    sandbox.set_faults(latency_ms=10, retry_after=120,
                       script=[{"nth": 30, "fault": "429", "method": "POST"}])
    target = Target(sandbox, tmp_path, messages)
    wait_until(sandbox, target, "429", 1)
    time.sleep(0.3)  # every worker is waiting on the gate now
    posts = sandbox.stats()["by_method"]["POST"]
    states = target.stop()
    assert_interrupted(sandbox, target, states, signal.SIGTERM)
    assert sandbox.stats()["by_method"]["POST"] == posts  # gave up the wait, sent nothing
    assert not states or states[-1]["position"] < 30
    rerun_completes(sandbox, tmp_path, messages)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_while_waiting_for_input_passes_on_what_was_written(sandbox, tmp_path,
                                                                     signum):
    """The tap is slow (its pipe open, silent): the signal stops the read at once."""
    messages = numbered_load(40)
    target = Target(sandbox, tmp_path, None)
    target.process.stdin.write("".join(json.dumps(m) + "\n" for m in messages))
    target.process.stdin.flush()
    wait_until(sandbox, target, "creates", 40)
    time.sleep(0.3)  # the target has read everything and waits for more
    states = target.stop(signum)
    assert_interrupted(sandbox, target, states, signum)
    assert states[-1] == {"position": 40}  # written while it waited: passed on at the stop
    assert sandbox.stats()["creates"] == 40
    target.process.stdin.close()
    rerun_completes(sandbox, tmp_path, numbered_load(COUNT), COUNT)


def test_a_second_signal_exits_at_once_with_no_state_past_a_stuck_write(sandbox, tmp_path):
    messages = numbered_load(60)
    # One POST of the second batch (records 21-40) takes 8 s; the first signal waits for it.
    sandbox.set_faults(slow_ms=8000, script=[{"nth": 25, "fault": "slow", "method": "POST"}])
    target = Target(sandbox, tmp_path, messages, request_timeout=30)
    wait_until(sandbox, target, "POST", 25)
    target.process.send_signal(signal.SIGTERM)
    target.wait_for_stderr("SIGTERM received")
    states = target.stop(signal.SIGTERM)
    stderr = "".join(target.stderr)
    assert target.process.returncode == 128 + signal.SIGTERM
    assert "second SIGTERM" in stderr and "Traceback" not in stderr
    assert all(state["position"] <= 20 for state in states)  # none past the stuck record
    assert_exactly_once(sandbox, "tax_id", tax_ids(max([0] + [s["position"] for s in states])))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # the server commits the stuck POST after the exit
        stats = sandbox.stats()
        if stats["creates"] >= stats["by_method"]["POST"]:
            break
        time.sleep(0.05)
    rerun_completes(sandbox, tmp_path, messages, 60)
