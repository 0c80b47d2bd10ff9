"""A dry run through ``meltano run`` changes no state: the real run after it sends every record.

The story of issue 16: a rehearsal with ``dry_run`` and ``plan_path``, then the real
load. The source is stateful (tap-piriod, incremental on ``updated``, reading one
sandbox) and the target writes to another sandbox, matched on ``tax_id`` (the source's
Piriod ids mean nothing there, so a stream map drops them). When target-piriod passed
STATE on in a dry run, Meltano saved the source's bookmark, and the real run read
nothing: every customer of the rehearsal was silently skipped.
"""

from __future__ import annotations

import json
import subprocess

import pytest
from meltano_helpers import MELTANO, Meltano, installed_project

from piriod_sandbox import SandboxProcess

pytestmark = pytest.mark.meltano

SANDBOX_CUSTOMERS = 30  # the source
SUFFIX = "dry-run"
STATE_ID = f"dev:tap-piriod-to-target-piriod:{SUFFIX}"


@pytest.fixture(scope="module")
def meltano(tmp_path_factory: pytest.TempPathFactory) -> Meltano:
    """The project copy with every plugin installed (shared with the other Meltano tests)."""
    return installed_project(tmp_path_factory)


@pytest.fixture
def destination() -> SandboxProcess:
    """An empty Piriod account for the customers of the source to be loaded into."""
    with SandboxProcess(0) as server:
        yield server


def summary_line(done) -> str:
    lines = [line for line in (done.stdout + done.stderr).splitlines()
             if "target-piriod summary:" in line]
    assert lines, (done.stdout + done.stderr)[-4000:]
    return lines[-1].split("target-piriod summary:")[1]


def saved_state(meltano: Meltano) -> dict:
    """Return what Meltano keeps for the pipeline ({} when it keeps nothing)."""
    done = meltano("state", "get", STATE_ID, check=False)
    text = done.stdout.strip()
    return json.loads(text) if done.returncode == 0 and text.startswith("{") else {}


def test_dry_run_then_real_run_sends_every_record(meltano, sandbox, destination, tmp_path):
    source = sandbox
    env = {"TAP_PIRIOD_API_URL": source.url, "TAP_PIRIOD_AUTH_TOKEN": source.token,
           # Piriod ids of the source account are unknown to the destination: match on tax_id.
           "TAP_PIRIOD_STREAM_MAPS": json.dumps(
               {"customers": {"id": "__NULL__", "__key_properties__": ["tax_id"]}}),
           "TARGET_PIRIOD_API_URL": destination.url,
           "TARGET_PIRIOD_AUTH_TOKEN": destination.token,
           "TARGET_PIRIOD_DEAD_LETTER_PATH": str(tmp_path / "rejects.jsonl")}
    run = ("run", "--state-id-suffix", SUFFIX, "tap-piriod", "target-piriod")
    tax_ids = sorted(c["tax_id"] for c in source.customers())
    assert len(tax_ids) == SANDBOX_CUSTOMERS

    plan = tmp_path / "plan.jsonl"
    dry = meltano(*run, env={**env, "TARGET_PIRIOD_DRY_RUN": "true",
                             "TARGET_PIRIOD_PLAN_PATH": str(plan)})
    assert f"records={SANDBOX_CUSTOMERS} created={SANDBOX_CUSTOMERS}" in summary_line(dry)
    assert "dry run: no STATE emitted" in summary_line(dry)
    assert sorted(json.loads(line)["key"]["value"] for line in plan.read_text().splitlines()) \
        == tax_ids
    assert destination.customers() == []
    assert saved_state(meltano).get("singer_state") is None, "the bookmark must not move"

    real = meltano(*run, env=env)
    assert f"records={SANDBOX_CUSTOMERS} created={SANDBOX_CUSTOMERS}" in summary_line(real)
    assert sorted(c["tax_id"] for c in destination.customers()) == tax_ids
    bookmark = saved_state(meltano)["singer_state"]["bookmarks"]["customers"]
    assert bookmark["replication_key_value"]  # the real run moved it

    again = meltano(*run, env=env)  # incremental: nothing new since the bookmark
    assert "created=0" in summary_line(again)
    assert len(destination.customers()) == SANDBOX_CUSTOMERS




def test_select_list_needs_no_token(meltano):
    """Listing streams is discovery, which calls no API: no token, no reachable API.

    In the prod environment no token is set (it comes from the environment) and api_url
    is the real API, which the test must not reach: discovery asks neither.
    """
    done = subprocess.run([str(MELTANO), "--environment=prod", "select", "tap-piriod",
                           "--list", "--all"], cwd=meltano.root, env=meltano.base_env,
                          capture_output=True, text=True, timeout=600, check=False)
    text = done.stdout + done.stderr
    assert done.returncode == 0, text[-3000:]
    assert "customers.email" in text and "customers.tax_id" in text, text[-3000:]
    assert "Traceback" not in text and "auth_token" not in text
