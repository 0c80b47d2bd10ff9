"""A dry run emits no STATE: the orchestrator must not save a bookmark for rows not loaded.

Meltano saves every STATE a target passes on as the source's bookmark; a dry run that
passed one on made the real run after it skip the rows it had only rehearsed. The same
input loaded for real passes its STATE on (the contrast: the test would pass for a
target that never emits STATE otherwise). ``tests/test_meltano_dry_run.py`` runs the
whole story through ``meltano run``.
"""

from __future__ import annotations

from target_helpers import messages_for, new_customer, run_target, state_message

SANDBOX_CUSTOMERS = 20


def load(count: int) -> list[dict]:
    """SCHEMA, records with a STATE after each one (a tap checkpointing), a final STATE."""
    messages = messages_for([new_customer(n) for n in range(1, count + 1)])
    records = messages[1:-1]
    interleaved = [m for n, record in enumerate(records, 1)
                   for m in (record, state_message({"position": n}))]
    return [messages[0], *interleaved, messages[-1]]


def test_dry_run_emits_no_state_and_says_so(sandbox, tmp_path):
    sandbox.reset_stats()
    run = run_target(sandbox, tmp_path, load(5), match_field="tax_id", dry_run=True,
                     batch_size_rows=2)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout == "", "a dry run writes nothing on stdout: no STATE"
    assert run.count("created") == 5
    assert "(dry run: no STATE emitted, nothing was written)" in run.stderr
    assert sandbox.stats()["writes"] == 0


def test_the_real_run_emits_the_state(sandbox, tmp_path):
    run = run_target(sandbox, tmp_path, load(5), match_field="tax_id", batch_size_rows=2)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.states[-1] == {"loaded": 5}
    assert "no STATE emitted" not in run.stderr
