"""Reverse ETL from a CSV file: the ``reverse-etl-csv`` job, end to end with real Meltano.

``meltano run reverse-etl-csv`` is ``tap-spreadsheets target-piriod`` reading
``examples/customers.csv`` (dev): three customers of the sandbox's seed (one as Piriod has
it, one with a new email, one renamed with an empty phone cell) and two new ones (a name
with a comma, a Peruvian customer). Real processes: the sandbox, Meltano and its plugins
from PyPI (installed once per session, tests/meltano_helpers.py), target-piriod writing
over HTTP.

The tap's bookmark is the file's modification time in whole seconds, so the tests set it
with ``os.utime`` rather than rely on when the file was written; to an instant in the past,
since the SDK never saves a bookmark later than the run's start.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from meltano_helpers import REPO, Meltano, installed_project, piriod_env

from piriod_sandbox import SandboxProcess

pytestmark = pytest.mark.meltano

SANDBOX_CUSTOMERS = 20  # the seed's first customers are the same whatever the count
EXAMPLE = REPO / "examples" / "customers.csv"
JOB = "reverse-etl-csv"


@pytest.fixture(scope="module")
def meltano(tmp_path_factory: pytest.TempPathFactory) -> Meltano:
    return installed_project(tmp_path_factory)


@pytest.fixture
def csv_file(meltano: Meltano) -> Path:
    """The project's examples/customers.csv, fresh from the repo, stamped at a whole second."""
    path = meltano.root / "examples" / "customers.csv"
    path.parent.mkdir(exist_ok=True)
    shutil.copy(EXAMPLE, path)
    os.utime(path, (1_700_000_000, 1_700_000_000))
    return path


def by_tax_id(sandbox: SandboxProcess) -> dict[str, dict]:
    return {customer["tax_id"]: customer for customer in sandbox.customers()}


def summary(output: str) -> str:
    lines = [line for line in output.splitlines() if "target-piriod summary:" in line]
    assert len(lines) == 1, output[-4000:]
    return lines[0].split("target-piriod summary: ", 1)[1]


def run(meltano: Meltano, sandbox: SandboxProcess, suffix: str, *options: str,
        env: dict[str, str] | None = None) -> str:
    done = meltano("run", "--state-id-suffix", suffix, *options, JOB,
                   env={**piriod_env(sandbox), **(env or {})})
    return done.stdout + done.stderr


def test_the_example_file_creates_updates_and_is_not_read_twice(
        meltano: Meltano, sandbox: SandboxProcess, csv_file: Path) -> None:
    before = by_tax_id(sandbox)
    output = run(meltano, sandbox, "csv-example")
    assert summary(output).startswith(
        "records=5 created=2 updated=2 unchanged=1 skipped=0 rejected=0")
    after = by_tax_id(sandbox)
    assert len(after) == SANDBOX_CUSTOMERS + 2

    assert after["76.000.001-6"] == before["76.000.001-6"]  # as Piriod has it: untouched
    assert after["76.000.002-6"]["email"] == "pagos@serviciosrojas.example"
    assert {k: v for k, v in after["76.000.002-6"].items() if k not in ("email", "updated")} \
        == {k: v for k, v in before["76.000.002-6"].items() if k not in ("email", "updated")}
    renamed = after["76.000.003-2"]
    assert renamed["name"] == "Servicios Díaz Ltda. (renamed in CRM)"
    assert renamed["email"] == before["76.000.003-2"]["email"]
    # The empty phone cell leaves the attribute as Piriod has it (empty_values: ignore).
    assert renamed["phone"] == before["76.000.003-2"]["phone"]

    new = after["98.100.001-1"]
    assert (new["name"], new["email"], new["phone"], new["country"]["id"]) == (
        "Importadora Sur, SpA", "contacto@importadorasur.example", "+56 2 2345 6789", "CL")
    assert after["98.100.002-2"]["country"]["id"] == "PE"
    # No bookkeeping column of the tap reached Piriod.
    assert not any(key.startswith("_sdc") for key in new) and new["metadata"] in ({}, None)

    # Unchanged file: the bookmark (its mtime) says so, nothing is read, nothing written.
    again = run(meltano, sandbox, "csv-example")
    assert summary(again).startswith("records=0 created=0 updated=0 unchanged=0")
    assert by_tax_id(sandbox) == after


def test_an_edited_file_is_read_again_and_only_the_change_is_written(
        meltano: Meltano, sandbox: SandboxProcess, csv_file: Path) -> None:
    run(meltano, sandbox, "csv-edit")
    loaded = by_tax_id(sandbox)
    # A phone and a tax id of digits only stay text (every column is read as a string).
    text = csv_file.read_text().replace("+51 1 555 0101", "5115550101")
    csv_file.write_text(text + "77123456,Solo Digitos SpA,solo@digitos.example,56221234567,CL\n")
    os.utime(csv_file, (1_700_000_100, 1_700_000_100))

    output = run(meltano, sandbox, "csv-edit")
    assert summary(output).startswith(
        "records=6 created=1 updated=1 unchanged=4 skipped=0 rejected=0")
    after = by_tax_id(sandbox)
    assert after["98.100.002-2"]["phone"] == "5115550101"
    assert after["98.100.002-2"]["id"] == loaded["98.100.002-2"]["id"]
    assert (after["77123456"]["name"], after["77123456"]["phone"]) == (
        "Solo Digitos SpA", "56221234567")
    for tax_id in ("76.000.001-6", "76.000.002-6", "76.000.003-2", "98.100.001-1"):
        assert after[tax_id] == loaded[tax_id]


def test_a_rehearsal_leaves_the_real_run_everything(
        meltano: Meltano, sandbox: SandboxProcess, csv_file: Path, tmp_path: Path) -> None:
    before = by_tax_id(sandbox)
    plan = tmp_path / "plan.jsonl"
    # No --no-state-update: a dry run emits no STATE, so Meltano saves no bookmark.
    dry = run(meltano, sandbox, "csv-rehearsal",
              env={"TARGET_PIRIOD_DRY_RUN": "true", "TARGET_PIRIOD_PLAN_PATH": str(plan)})
    assert "(dry run: no STATE emitted, nothing was written; plan: 4 customer(s)" \
        in summary(dry)
    assert by_tax_id(sandbox) == before
    planned = [json.loads(line) for line in plan.read_text().splitlines()]
    assert sorted((line["action"], line["key"]["value"]) for line in planned) == [
        ("create", "98.100.001-1"), ("create", "98.100.002-2"),
        ("update", "76.000.002-6"), ("update", "76.000.003-2")]
    # No bookmark was saved: the real run reads the file and sends every record.
    state = meltano("state", "get", "dev:tap-spreadsheets-to-target-piriod:csv-rehearsal",
                    check=False)
    assert "_sdc_last_modified" not in state.stdout
    real = run(meltano, sandbox, "csv-rehearsal")
    assert summary(real).startswith(
        "records=5 created=2 updated=2 unchanged=1 skipped=0 rejected=0")
