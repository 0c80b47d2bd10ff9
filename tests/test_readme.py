"""The README's shell blocks run as written, against a sandbox: the README cannot drift.

Every ```bash or ```sh block of README.md is either marked ``<!-- test: run -->`` on the
line before it, and run here, or listed in NOT_RUN with the reason it is not (PostgreSQL,
a production token, a server that runs until stopped). A new block fails
``test_every_shell_block_is_run_or_excused`` until it is classified.

The runnable blocks run in README order, each in its own ``bash -e``, in a copy of the
repository (its files as git sees them, uncommitted edits included; the repo's own
``.meltano/``, ``.env`` and ``output/`` are left alone), with a sandbox started as
``make sandbox`` does (``--seed 500``) and the test's virtualenv as the copy's ``.venv``
and first on ``PATH`` (what ``. .venv/bin/activate`` does, for every block). One thing is
substituted: the sandbox listens on a free port, not 8765 (a ``make sandbox`` may be
running), so ``127.0.0.1:8765`` is replaced by its address in the blocks and in the copy's
``meltano.yml``, as a user whose port 8765 is taken would do.

Between blocks the test only does what the README's prose asks of the reader (delete a
customer in Piriod before the reconcile); after each, it checks what the block printed
and what the sandbox holds.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from piriod_sandbox import SandboxProcess

pytestmark = pytest.mark.meltano

REPO = Path(__file__).resolve().parents[1]
VENV = Path(sys.executable).parents[1]
RUN_MARK = "<!-- test: run -->"
DEV_ADDRESS = "127.0.0.1:8765"

# The blocks this test does not run: the start of the block's first line -> why not.
NOT_RUN = {
    "make demo": "`make demo` is tests/test_meltano_demo.py; `make test` is this suite",
    "pip install .": "the real API with a real token (YOUR-PIRIOD-TOKEN)",
    "target-piriod --config target-config.json --test":
        "Meltano 4.4.1's own ProcessLookupError in `meltano config test` of a loader (the "
        "README says so); tests/test_meltano_config_test.py runs both commands",
    "meltano --environment=prod config set": "sets a production secret",
    "meltano add --plugin-type extractor":
        "adds the plugins to a project of your own; tests/test_meltano_project.py does it",
    "meltano --environment=prod run tap-piriod target-duckdb": "the real API, a real token",
    "meltano run --full-refresh tap-piriod target-postgres":
        "PostgreSQL; tests/test_tap_attributes_meltano.py runs the recipe",
    "meltano --environment=prod run reconcile":
        "the real API and PostgreSQL; tests/test_meltano_reconcile.py runs the job",
    "export TAP_POSTGRES_HOST":
        "PostgreSQL and the real API; tests/test_meltano_pipelines.py runs the pipeline",
    "meltano --environment=prod run warehouse-replication":
        "the real API and PostgreSQL; tests/test_meltano_pipelines.py runs the pipeline",
    "piriod-sandbox --port 8765": "servers that run until stopped (this test starts one)",
    "jq -c": "jq is no dependency of the project; tests/test_target_plan.py reads the plan",
    "make check": "the suite's own commands (make test runs make check first, and this test "
                  "runs inside it)",
}


@dataclass
class Block:
    """A shell block of the README."""

    line: int  # of the opening fence, 1-based
    text: str
    run: bool

    @property
    def first_line(self) -> str:
        return self.text.splitlines()[0] if self.text else ""


def readme_blocks() -> list[Block]:
    """Return the README's ```bash / ```sh blocks, in order."""
    lines = (REPO / "README.md").read_text().splitlines()
    blocks, n = [], 0
    while n < len(lines):
        if lines[n].strip() in ("```bash", "```sh"):
            end = lines.index("```", n + 1)
            marked = n > 0 and lines[n - 1].strip() == RUN_MARK
            blocks.append(Block(n + 1, "\n".join(lines[n + 1:end]), marked))
            n = end
        n += 1
    return blocks


def excuse(block: Block) -> str | None:
    """Return why a block is not run, or None if NOT_RUN does not list it."""
    return next((why for start, why in NOT_RUN.items()
                 if block.first_line.startswith(start)), None)


def test_every_shell_block_is_run_or_excused() -> None:
    blocks = readme_blocks()
    assert sum(block.run for block in blocks) >= 7
    unclassified = [f"README.md:{b.line}: {b.first_line}" for b in blocks
                    if not b.run and excuse(b) is None]
    assert not unclassified, ("mark these blocks `<!-- test: run -->` or add them to NOT_RUN "
                              f"with the reason: {unclassified}")
    both = [f"README.md:{b.line}" for b in blocks if b.run and excuse(b) is not None]
    assert not both, f"marked to run but excused in NOT_RUN: {both}"
    used = {start for start in NOT_RUN for b in blocks if b.first_line.startswith(start)}
    assert used == set(NOT_RUN), f"NOT_RUN names blocks no longer there: {set(NOT_RUN) - used}"


def test_the_readme_retire_sql_is_the_file_the_job_runs() -> None:
    sql = re.findall(r"```sql\n(.*?)```", (REPO / "README.md").read_text(), re.DOTALL)
    retire = [block for block in sql if block.startswith("-- DuckDB: retire the customers")]
    assert retire == [(REPO / "examples" / "duckdb" / "retire-deleted.sql").read_text()]


# -- running them ---------------------------------------------------------------------------


def copy_repository(destination: Path) -> None:
    """Copy the files git sees (tracked, or new and not ignored), with their mtimes."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others",
                             "--exclude-standard"], cwd=REPO, capture_output=True, check=True)
    for name in filter(None, listed.stdout.decode().split("\0")):
        source = REPO / name
        if source.is_file():
            (destination / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, destination / name)
    (destination / ".venv").symlink_to(VENV)


def summaries(output: str) -> list[str]:
    """Return target-piriod's summary lines, from `summary:` on."""
    return re.findall(r"target-piriod summary: ([^\n]*)", output)


class Reader:
    """Runs README blocks as a reader would: in the copy, with .venv on PATH."""

    def __init__(self, root: Path, sandbox: SandboxProcess) -> None:
        self.root, self.sandbox = root, sandbox
        self.address = sandbox.url.removeprefix("http://")
        env = {key: value for key, value in os.environ.items()
               if not key.startswith(("MELTANO_", "TAP_", "TARGET_", "VIRTUAL_ENV"))}
        env.update(PATH=f"{VENV / 'bin'}{os.pathsep}{env.get('PATH', '')}", NO_COLOR="1",
                   MELTANO_SEND_ANONYMOUS_USAGE_STATS="false")
        self.env = env

    def run(self, block: Block) -> str:
        """Run one block; fail the test if it fails. Return what it printed."""
        script = block.text.replace(DEV_ADDRESS, self.address)
        done = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", script], cwd=self.root,
                              env=self.env, capture_output=True, text=True, timeout=1800)
        output = done.stdout + done.stderr
        assert done.returncode == 0, (f"README.md:{block.line} exited {done.returncode}:\n"
                                      f"{block.text}\n---\n{output[-6000:]}")
        # The trap of issue 16: Meltano dropping the default environment without a word.
        assert "will be ignored" not in output, f"README.md:{block.line}:\n{output[-3000:]}"
        return output

    def customer(self, tax_id: str) -> dict:
        found = [c for c in self.sandbox.customers() if c["tax_id"] == tax_id]
        assert len(found) == 1, found
        return found[0]


def test_the_readme_runs_as_written_against_a_sandbox(tmp_path: Path) -> None:
    if not (VENV / "bin" / "meltano").exists():
        pytest.fail(f"meltano is not installed in {VENV}: make venv")
    root = tmp_path / "piriod-singer"
    copy_repository(root)
    (root / "meltano.yml").write_text((root / "meltano.yml").read_text().replace(
        DEV_ADDRESS, "ADDRESS"))
    # `make venv` in the copy must find .venv up to date: it would otherwise reinstall
    # this venv's editable package from the temp copy.
    if subprocess.run(["make", "-q", "venv"], cwd=root).returncode != 0:
        pytest.fail(f"{VENV} is not up to date with pyproject.toml: run `make venv` first")

    with SandboxProcess(500) as sandbox:
        reader = Reader(root, sandbox)
        (root / "meltano.yml").write_text((root / "meltano.yml").read_text().replace(
            "ADDRESS", reader.address))
        seeded = reader.customer("76.000.003-2")
        outputs: dict[str, str] = {}
        doomed = ""
        for block in (b for b in readme_blocks() if b.run):
            if block.first_line.startswith("meltano run reconcile-duckdb"):
                # The README: customers deleted in Piriod are retired by the reconcile.
                # (The seed's last tax id: no block of the README edits that customer.)
                doomed = max(sandbox.customers(), key=lambda c: c["tax_id"] or "")["id"]
                sandbox.delete([doomed])
            outputs[block.first_line] = reader.run(block)
        check_outputs(reader, outputs, seeded, doomed)


def output_of(outputs: dict[str, str], start: str) -> str:
    found = [output for first, output in outputs.items() if first.startswith(start)]
    assert len(found) == 1, f"no single run block starting with {start!r}"
    return found[0]


def check_outputs(reader: Reader, outputs: dict[str, str], seeded: dict, doomed: str) -> None:
    """What the README promises each block does."""
    # target-piriod's example pipelines: rehearse, load, load again (nothing), Piriod->Piriod.
    dry, first, again, roundtrip = summaries(output_of(outputs, "# 1. Edited customers"))
    assert dry.startswith("records=2 created=1 updated=1 unchanged=0") and "dry run" in dry
    assert first.startswith("records=2 created=1 updated=1 unchanged=0 skipped=0 rejected=0")
    assert again.startswith("records=2 created=0 updated=0 unchanged=2 skipped=0 rejected=0")
    assert re.match(r"records=501 created=0 updated=0 unchanged=501 skipped=0 rejected=0",
                    roundtrip), roundtrip
    assert reader.customer("76.000.004-8")["name"] == "Comercial Araya SpA"

    # Meltano in dev, without --environment: the sandbox's URL and token.
    listing = output_of(outputs, "meltano config list tap-piriod")
    assert f"current value: 'http://{reader.address}'" in listing
    assert "auth_token [env: TAP_PIRIOD_AUTH_TOKEN] current value: (redacted) (from the " \
           "active environment in `meltano.yml`)" in listing
    assert "Plugin configuration is valid" in listing
    assert "[selected   ] customers.tax_id" in listing
    assert re.search(r"│\s+customers\s+│.*│\s+501\s+│", listing, re.DOTALL), listing[-2000:]

    # reconcile-duckdb retires the customer deleted in Piriod, and only that one.
    reconcile = output_of(outputs, "meltano run reconcile-duckdb")
    assert re.search(r"│\s+deleted\s+│.*│\s+1\s+│", reconcile, re.DOTALL), reconcile[-2000:]
    import duckdb
    with duckdb.connect(str(reader.root / "output" / "warehouse.duckdb"),
                        read_only=True) as db:
        retired = db.execute("SELECT id FROM piriod.customers "
                             "WHERE _sdc_deleted_at IS NOT NULL").fetchall()
    assert retired == [(doomed,)]

    # The CSV: the rehearsal writes nothing and saves no bookmark, so the load sends all.
    dry, load = summaries(output_of(outputs, "# Rehearse: what would change?"))
    assert dry.startswith("records=5 created=2 updated=2 unchanged=1 skipped=0 rejected=0")
    assert "dry run: no STATE emitted, nothing was written; plan: 4 customer(s)" in dry
    assert load.startswith("records=5 created=2 updated=2 unchanged=1 skipped=0 rejected=0")
    assert reader.customer("76.000.002-6")["email"] == "pagos@serviciosrojas.example"
    assert reader.customer("98.100.001-1")["name"] == "Importadora Sur, SpA"
    assert reader.customer("98.100.002-2")["country"]["id"] == "PE"
    renamed = reader.customer("76.000.003-2")
    assert renamed["name"] == "Servicios Díaz Ltda. (renamed in CRM)"
    # The row's empty phone cell: `empty_values: ignore` (the default) keeps the phone.
    assert renamed["phone"] == seeded["phone"]

    state = output_of(outputs, "meltano state list")
    assert '"replication_key_value"' in state and "dev:tap-piriod-to-target-duckdb" in state

    scheduling = output_of(outputs, "meltano job list")
    for name in ("reconcile-duckdb", "reverse-etl-csv", "reverse-etl", "reconcile"):
        assert name in scheduling
    assert "reverse-etl-csv-hourly" in scheduling and "reconcile-duckdb-weekly" in scheduling
    # The CSV again, unchanged: its mtime is the bookmark, so nothing is read or sent.
    assert summaries(scheduling)[0].startswith("records=0 created=0 updated=0")
