"""The prod pipeline into PostgreSQL runs in BATCH mode, end to end with real Meltano.

``meltano --environment=prod run tap-piriod target-postgres`` (MeltanoLabs target-postgres
as pinned, a private PostgreSQL) with the prod environment's ``batch_config`` from
meltano.yml: the tap writes jsonl.gz files under ``output/batches``, target-postgres reads
them, every customer is a row, and an incremental run upserts. The reconcile job's tap
stays in RECORD mode (a BATCH full read cannot retire deleted customers).

The project and its plugins are tests/meltano_helpers.py's (installed once per session).
"""

from __future__ import annotations

import json
import subprocess

import pytest
from meltano_helpers import MELTANO, Meltano, installed_project, piriod_env, postgres_env
from postgres_server import PostgresNotAvailable, PostgresServer

from piriod_sandbox import SandboxProcess

pytestmark = pytest.mark.meltano

SANDBOX_CUSTOMERS = 250


@pytest.fixture(scope="module")
def meltano(tmp_path_factory: pytest.TempPathFactory) -> Meltano:
    return installed_project(tmp_path_factory)


@pytest.fixture(scope="module")
def postgres() -> PostgresServer:
    try:
        server = PostgresServer().start()
    except PostgresNotAvailable as error:
        pytest.fail(str(error))
    yield server
    server.stop()


def prod(meltano: Meltano, *args: str, env: dict | None = None) -> str:
    """Run ``meltano --environment=prod ...`` in the test project; return its stdout."""
    done = subprocess.run([str(MELTANO), "--environment=prod", *args], cwd=meltano.root,
                          env={**meltano.base_env, **(env or {})}, capture_output=True,
                          text=True, timeout=900, check=False)
    if done.returncode != 0:
        pytest.fail(f"meltano {' '.join(args)} exited {done.returncode}:\n"
                    f"{(done.stdout + done.stderr)[-6000:]}")
    return done.stdout


def test_prod_writes_batches_and_the_reconcile_does_not(meltano: Meltano) -> None:
    replication = json.loads(prod(meltano, "config", "print", "tap-piriod"))
    assert replication["batch_config"] == {
        "encoding": {"format": "jsonl", "compression": "gzip"},
        "storage": {"root": f"file://{meltano.root}/output/batches"}}
    # The inheriting plugin does not get the prod environment's batch_config (Meltano
    # 4.4 passes it scalar keys of it, though: a batch_size set there would arrive alone,
    # and the SDK would refuse a batch_config without encoding and storage).
    reconcile = json.loads(prod(meltano, "config", "print", "tap-piriod--reconcile"))
    assert not reconcile.get("batch_config")  # RECORD mode: its ACTIVATE_VERSION is sent


def test_prod_replication_into_postgres_loads_batches(
        meltano: Meltano, sandbox: SandboxProcess, postgres: PostgresServer) -> None:
    postgres.create_database("warehouse_batch")
    env = {**piriod_env(sandbox), **postgres_env(postgres, "target-postgres", "warehouse_batch")}
    suffix = "pg-batch"
    before = set((meltano.root / "output" / "batches").glob("*.json.gz"))
    log = prod(meltano, "run", "--state-id-suffix", suffix, "tap-piriod", "target-postgres",
               env=env)
    files = set((meltano.root / "output" / "batches").glob("*.json.gz")) - before
    assert len(files) == 1, log  # 250 customers: one file of up to 10,000
    query = "SELECT id, name, website, country->>'id', aggregations FROM piriod.customers"
    with postgres.connect("warehouse_batch") as connection:
        rows = {row[0]: row for row in connection.execute(query).fetchall()}
        stamped = connection.execute(  # README: BATCH rows carry no extraction stamps
            "SELECT count(*) FROM piriod.customers WHERE _sdc_extracted_at IS NOT NULL "
            "OR _sdc_batched_at IS NOT NULL OR _sdc_table_version IS NOT NULL").fetchone()[0]
    assert stamped == 0
    customers = {customer["id"]: customer for customer in sandbox.customers()}
    assert rows.keys() == customers.keys() and len(rows) == SANDBOX_CUSTOMERS
    for customer_id, (_, name, website, country, aggregations) in rows.items():
        expected = customers[customer_id]
        assert (name, website) == (expected["name"], expected["website"])
        assert country == (expected["country"] or {}).get("id")
        assert {key: float(value) for key, value in aggregations.items()} == \
            {key: float(value) for key, value in expected["aggregations"].items()}

    changed = set(sandbox.touch(count=5, changes={"website": "https://batch.example.com"},
                                rng_seed=3))
    prod(meltano, "run", "--state-id-suffix", suffix, "tap-piriod", "target-postgres", env=env)
    with postgres.connect("warehouse_batch") as connection:
        count, distinct = connection.execute(
            "SELECT count(*), count(DISTINCT id) FROM piriod.customers").fetchone()
        changed_rows = {row[0] for row in connection.execute(
            "SELECT id FROM piriod.customers WHERE website = 'https://batch.example.com'")}
    assert count == distinct == SANDBOX_CUSTOMERS
    assert changed_rows == changed
