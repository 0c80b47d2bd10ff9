"""BATCH into PostgreSQL for the replication job only, end to end with real Meltano.

``warehouse-replication`` is ``tap-piriod--batch target-postgres dbt-postgres:run
dbt-postgres:test``: tap-piriod--batch (tap-piriod with ``batch_config``, meltano.yml) writes
jsonl.gz files under ``output/batches``, target-postgres (MeltanoLabs, as pinned; a private
PostgreSQL) reads them, and dbt builds and tests the models. target-postgres stamps no
``_sdc_*`` column of a row loaded from a file, so the source freshness reads ``updated`` for
those rows. Every other plugin stays in RECORD mode in every environment:
``meltano --environment=prod run tap-piriod target-jsonl`` works (a BATCH message would stop
target-jsonl), and the reconcile job's full read sends its ACTIVATE_VERSION.

The project and its plugins are tests/meltano_helpers.py's (installed once per session).
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from meltano_helpers import (
    MELTANO,
    Meltano,
    installed_project,
    piriod_env,
    postgres_env,
    start_postgres,
)
from postgres_server import PostgresServer
from test_dbt_models import CUSTOMERS, assert_dbt_ran, assert_models_match, postgres_query

from piriod_sandbox import SandboxProcess

pytestmark = pytest.mark.meltano

SANDBOX_CUSTOMERS = 250
STALE = "ERROR STALE freshness of piriod.customers"
FRESH = "PASS freshness of piriod.customers"


@pytest.fixture(scope="module")
def meltano(tmp_path_factory: pytest.TempPathFactory) -> Meltano:
    return installed_project(tmp_path_factory)


@pytest.fixture(scope="module")
def postgres() -> Iterator[PostgresServer]:
    server = start_postgres()
    yield server
    server.stop()


def prod(meltano: Meltano, *args: str, env: dict | None = None,
         check: bool = True) -> subprocess.CompletedProcess:
    """Run ``meltano --environment=prod ...`` in the test project."""
    done = subprocess.run([str(MELTANO), "--environment=prod", *args], cwd=meltano.root,
                          env={**meltano.base_env, **(env or {})}, capture_output=True,
                          text=True, timeout=900, check=False)
    if check and done.returncode != 0:
        pytest.fail(f"meltano {' '.join(args)} exited {done.returncode}:\n"
                    f"{(done.stdout + done.stderr)[-6000:]}")
    return done


def batch_files(meltano: Meltano) -> set[Path]:
    return set((meltano.root / "output" / "batches").glob("*.json.gz"))


def test_replication_job_loads_batches_and_freshness_reads_their_updated(
        meltano: Meltano, sandbox: SandboxProcess, postgres: PostgresServer) -> None:
    """The prod hourly job on BATCH files: rows, models, freshness and state all right."""
    postgres.create_database("warehouse_batch")
    query = postgres_query(postgres, "warehouse_batch")
    env = {**piriod_env(sandbox), **postgres_env(postgres, "target-postgres", "warehouse_batch")}
    suffix = "pg-batch"
    # Every customer last changed 8 days ago (freshness errors after 7).
    eight_days_ago = (datetime.now(timezone.utc) - timedelta(days=8)).isoformat()
    assert len(sandbox.stamp(updated=eight_days_ago)) == SANDBOX_CUSTOMERS

    before = batch_files(meltano)
    done = prod(meltano, "run", "--state-id-suffix", suffix, "warehouse-replication", env=env)
    log = done.stdout + done.stderr
    assert_dbt_ran(log)
    assert len(batch_files(meltano) - before) == 1, log  # 250 customers: one file of 10,000
    # target-postgres stamps nothing on rows from a batch file ...
    assert query("SELECT count(*) FROM piriod.customers WHERE _sdc_extracted_at IS NOT NULL "
                 "OR _sdc_batched_at IS NOT NULL OR _sdc_table_version IS NOT NULL") == [(0,)]
    # ... and the models hold every customer, value for value, with NULL stamps.
    assert_models_match(query, sandbox.customers(), stamped=False)

    # Freshness reads the rows' `updated` (there is no _sdc_extracted_at): 8 days, stale.
    stale = prod(meltano, "invoke", "dbt-postgres:freshness", env=env, check=False)
    assert stale.returncode != 0
    assert STALE in stale.stdout + stale.stderr, (stale.stdout + stale.stderr)[-6000:]

    # Five customers change now; the next hourly run upserts them from a new file.
    changed = set(sandbox.touch(count=5, changes={"website": "https://batch.example.com"},
                                rng_seed=3))
    done = prod(meltano, "run", "--state-id-suffix", suffix, "warehouse-replication", env=env)
    assert_dbt_ran(done.stdout + done.stderr)
    assert query("SELECT count(*), count(DISTINCT id) FROM piriod.customers") == [
        (SANDBOX_CUSTOMERS, SANDBOX_CUSTOMERS)]
    assert {row[0] for row in query(f"SELECT customer_id FROM {CUSTOMERS} "
                                    "WHERE website = 'https://batch.example.com'")} == changed
    assert_models_match(query, sandbox.customers(), stamped=False)
    fresh = prod(meltano, "invoke", "dbt-postgres:freshness", env=env)
    assert FRESH in fresh.stdout + fresh.stderr

    # The hourly job's bookmark is tap-piriod--batch's, not tap-piriod's.
    state_ids = prod(meltano, "state", "list").stdout.split()
    assert f"prod:tap-piriod--batch-to-target-postgres:{suffix}" in state_ids
    assert f"prod:tap-piriod-to-target-postgres:{suffix}" not in state_ids


def test_prod_tap_piriod_sends_records_that_target_jsonl_reads(
        meltano: Meltano, sandbox: SandboxProcess, tmp_path: Path) -> None:
    """No batch_config on tap-piriod in prod: a loader that reads no BATCH works there."""
    before = batch_files(meltano)
    done = prod(meltano, "run", "--state-id-suffix", "prod-jsonl", "tap-piriod", "target-jsonl",
                env={**piriod_env(sandbox), "TARGET_JSONL_DESTINATION_PATH": str(tmp_path)})
    assert done.returncode == 0  # target-jsonl stops at a BATCH message
    assert batch_files(meltano) == before
    [written] = tmp_path.glob("customers*.jsonl")  # target-jsonl stamps the name
    lines = written.read_text().splitlines()
    assert sorted(json.loads(line)["id"] for line in lines) == sorted(
        customer["id"] for customer in sandbox.customers())
    assert len(lines) == SANDBOX_CUSTOMERS
