"""Customers changed while the tap is reading are neither skipped nor lost."""

from __future__ import annotations

import json
import subprocess

import pytest
from tap_helpers import TAP, TapRun, instant, run_tap, tap_config, write_json

# Correct with pages read one at a time and eight at a time.
pytestmark = pytest.mark.usefixtures("tap_workers")


def run_while_editing(sandbox, tmp_path, state, edit) -> TapRun:
    """Run the tap; once the first page has been emitted, call ``edit(first_page_ids)``."""
    config = write_json(tmp_path, "cfg.json", tap_config(sandbox, page_size=10))
    command = [*TAP, "--config", config]
    if state:
        command += ["--state", write_json(tmp_path, "st.json", state)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    messages, page, edited = [], [], False
    assert process.stdout is not None
    for line in process.stdout:
        messages.append(json.loads(line))
        if messages[-1]["type"] == "RECORD":
            page.append(messages[-1]["record"]["id"])
        if len(page) == 10 and not edited:
            edit(page)
            edited = True
    stderr = process.stderr.read() if process.stderr else ""
    assert process.wait(timeout=60) == 0, stderr
    assert edited, "the run finished before the first page was read"
    return TapRun(0, stderr, messages)


def test_updates_during_a_run_do_not_shift_records_out_of_it(sandbox, tmp_path):
    """Page-number pagination over an update-ordered list would skip records here."""
    sandbox.set_faults(latency_ms=30)
    run = run_while_editing(sandbox, tmp_path, None,
                            lambda page: sandbox.touch(ids=page[:5]))
    assert set(run.ids) == {c["id"] for c in sandbox.customers()}


@pytest.mark.parametrize("server_clock_offset", [0, -3600])
def test_change_made_during_a_run_is_caught_by_the_next(sandbox, tmp_path,
                                                        server_clock_offset):
    """A customer already read, then changed, must come back even if later ones moved on.

    With the server's clock an hour behind ours, a bookmark capped by our clock alone would
    jump over the change.
    """
    sandbox.set_faults(latency_ms=30, clock_offset_s=server_clock_offset)
    everyone = sandbox.customers()
    last_created = max(everyone, key=lambda c: instant(c["created"]))["id"]
    edited: list[str] = []

    def edit(page: list[str]) -> None:
        edited.extend(sandbox.touch(ids=[page[0]]))  # already read in its old version
        sandbox.touch(ids=[last_created])            # read later, in its new version

    sandbox.touch(ids=[c["id"] for c in everyone], updated="2026-01-01T00:00:00Z")
    during = run_while_editing(sandbox, tmp_path, None, edit)
    assert last_created in during.ids
    after = run_tap(sandbox, tmp_path, state=during.states[-1])
    assert edited[0] in after.ids


def test_inserts_and_edits_during_a_concurrent_read_lose_nothing(sandbox, tmp_path):
    """Customers committed mid-read with old `created` stamps push every later record one
    page on, and deleted ones pull them back, while pages are being fetched ahead: a
    record may be read twice, never missed. Customers inserted (or edited) during the run
    arrive by the next run at the latest.

    The sandbox moves the listing exactly before the 3rd list request (its churn control),
    not when a thread happens to get there: the same race on every run.
    """
    sandbox.set_faults(latency_ms=30)
    # Net two rows fewer before every page edge: the old reader lost rows every time.
    sandbox.set_churn(at=3, inserts=8, deletes=10, within=10, rng_seed=3)
    before = {c["id"] for c in sandbox.customers()}
    during = run_while_editing(sandbox, tmp_path, None,
                               lambda page: sandbox.touch(ids=page[:3]))
    churn = sandbox.churn()
    assert churn["applied"] == 1 and len(churn["inserted"]) == 8
    kept = before - set(churn["deleted"])
    assert kept <= set(during.ids), f"missed {kept - set(during.ids)}"
    after = run_tap(sandbox, tmp_path, state=during.states[-1])
    assert set(churn["inserted"]) <= set(during.ids) | set(after.ids)
