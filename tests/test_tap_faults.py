"""Every fault the API can throw at tap-piriod ends in a complete run or a clear error."""

from __future__ import annotations

import json
import subprocess

import pytest
from singer_sdk.exceptions import FatalAPIError
from tap_helpers import TAP, run_tap, tap_config, write_json

from piriod_sandbox import SandboxProcess
from tap_piriod.tap import TapPiriod

# Correct with pages read one at a time and eight at a time.
pytestmark = pytest.mark.usefixtures("tap_workers")

SECRET = "tok-s3cr3t-do-not-print-4f9a"


def assert_complete(run, sandbox) -> None:
    assert run.returncode == 0, run.stderr[-3000:]
    assert sorted(set(run.ids)) == sorted(c["id"] for c in sandbox.customers())
    assert "Traceback" not in run.stderr
    assert "JSONDecodeError" not in run.stderr


@pytest.mark.parametrize("fault", ["429", "500", "502", "503_html", "drop", "malformed"])
def test_transient_fault_is_retried_to_a_complete_run(sandbox, tmp_path, fault):
    sandbox.set_faults(retry_after=1, script=[{"nth": 2, "fault": fault},
                                              {"nth": 5, "fault": fault}])
    run = run_tap(sandbox, tmp_path, page_size=25)
    assert_complete(run, sandbox)
    assert sandbox.call("GET", "faults")["injected"] == {fault: 2}
    assert ("throttled (429)" if fault == "429" else "Retry 1 of 3") in run.stderr


def test_429_waits_what_retry_after_asks(sandbox, tmp_path):
    sandbox.set_faults(retry_after=2, script=[{"nth": 1, "fault": "429"}])
    run = run_tap(sandbox, tmp_path)
    assert_complete(run, sandbox)
    assert "throttled (429): every request waits 2.0 s" in run.stderr


def test_timeout_is_retried(sandbox, tmp_path):
    sandbox.set_faults(slow_ms=2500, script=[{"nth": 3, "fault": "slow"}])
    run = run_tap(sandbox, tmp_path, page_size=50, request_timeout=1)
    assert_complete(run, sandbox)
    assert "timeout after 1 s" in run.stderr


def test_random_mix_of_faults_still_completes(sandbox, tmp_path):
    sandbox.set_faults(retry_after=0, seed=11, random={
        "429": 0.08, "502": 0.08, "503_html": 0.08, "drop": 0.08, "malformed": 0.08})
    run = run_tap(sandbox, tmp_path, page_size=10, max_retries=8)
    assert_complete(run, sandbox)
    assert sum(sandbox.call("GET", "faults")["injected"].values()) >= 3


def test_persistent_5xx_fails_with_a_clear_message(sandbox, tmp_path):
    sandbox.set_faults(random={"503_html": 1.0})
    run = run_tap(sandbox, tmp_path, max_retries=2)
    assert run.returncode != 0
    assert "GET /customers/ still failing after 3 attempts" in run.stderr
    assert "an HTML page" in run.stderr
    assert "JSONDecodeError" not in run.stderr


def test_bad_token_fails_at_once_naming_the_setting_not_the_token(sandbox, tmp_path):
    sandbox.reset_stats()
    run = run_tap(sandbox, tmp_path, auth_token=SECRET)
    assert run.returncode != 0
    assert "401" in run.stderr and "auth_token" in run.stderr
    assert SECRET not in run.stderr + json.dumps(run.messages)
    assert sandbox.stats()["requests"] == 1, "a 401 must not be retried"


def test_wrong_api_url_fails_naming_the_setting(sandbox, tmp_path):
    run = run_tap(sandbox, tmp_path, api_url=f"{sandbox.url}/v9")
    assert run.returncode != 0
    assert "404" in run.stderr and "api_url" in run.stderr


def test_token_never_printed(tmp_path):
    """Not in the logs of a run with retries and of a failing run, not in --about, not in state."""
    with SandboxProcess(30, token=SECRET) as server:
        server.set_faults(retry_after=0, script=[{"nth": 1, "fault": "503"},
                                                 {"nth": 2, "fault": "429"},
                                                 {"nth": 3, "fault": "malformed"}])
        ok = run_tap(server, tmp_path, page_size=10)
        assert_complete(ok, server)
        server.set_faults(retry_after=0, random={"503": 1.0})
        failing = run_tap(server, tmp_path, max_retries=1)
    config = write_json(tmp_path, "secret.json", tap_config(server, auth_token=SECRET))
    about = subprocess.run([*TAP, "--about", "--format", "json", "--config", config],
                           capture_output=True, text=True, check=True)
    assert failing.returncode != 0
    assert "Retry" in ok.stderr, "the retries whose logs are checked did happen"
    for text in (ok.stderr, json.dumps(ok.messages), about.stdout, about.stderr,
                 failing.stderr, json.dumps(failing.messages)):
        assert SECRET not in text
    assert "auth_token" in about.stdout


@pytest.mark.parametrize("updated", [None, "yesterday", 1700000000])
def test_a_record_without_a_readable_updated_is_a_clear_error(updated):
    """The API's contract broken (a fault the sandbox cannot serve): name the customer."""
    tap = TapPiriod(config={"auth_token": SECRET, "api_url": "http://127.0.0.1:9"},
                    validate_config=True)
    stream = tap.streams["customers"]
    with pytest.raises(FatalAPIError, match=r"cannot place .*'c-1'"):
        stream.post_process({"id": "c-1", "updated": updated})


def test_timestamps_in_any_iso_form_become_one_utc_text():
    from tap_piriod.streams import utc_text

    assert utc_text("2025-01-02T03:04:05.1Z") == "2025-01-02T03:04:05.100000+00:00"
    assert utc_text("2025-01-02T03:04:05.123456789-03:00") == "2025-01-02T06:04:05.123456+00:00"
    assert utc_text("2025-01-02T03:04:05+05:30") == "2025-01-01T21:34:05.000000+00:00"
