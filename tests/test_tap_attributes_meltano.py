"""The README's recipe for a new attribute, end to end: Meltano's ``schema`` extra.

Piriod adds ``loyalty_tier`` (the sandbox serves it once a ``touch`` sets it). Run as
shipped, target-postgres drops it (no column: the SCHEMA message does not name it) and
the tap's log says so. With the attribute named through the ``schema`` extra
(``TAP_PIRIOD__SCHEMA``, the environment form of ``schema:`` in meltano.yml) the column
is created and a full refresh fills it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from meltano_helpers import Meltano, installed_project, piriod_env, postgres_env, start_postgres
from postgres_server import PostgresServer

from piriod_sandbox import SandboxProcess

pytestmark = pytest.mark.meltano

SANDBOX_CUSTOMERS = 60
COLUMNS = ("SELECT column_name FROM information_schema.columns "
           "WHERE table_schema = 'piriod' AND table_name = 'customers'")


@pytest.fixture(scope="module")
def meltano(tmp_path_factory: pytest.TempPathFactory) -> Meltano:
    return installed_project(tmp_path_factory)


@pytest.fixture(scope="module")
def postgres() -> Iterator[PostgresServer]:
    server = start_postgres()
    yield server
    server.stop()


def test_a_new_attribute_reaches_postgres_once_the_schema_names_it(
        meltano: Meltano, sandbox: SandboxProcess, postgres: PostgresServer) -> None:
    ids = set(sandbox.touch(count=4, changes={"loyalty_tier": "gold"}, rng_seed=5))
    postgres.create_database("warehouse_attributes")
    env = {**piriod_env(sandbox),
           **postgres_env(postgres, "target-postgres", "warehouse_attributes")}
    run = ("run", "--state-id-suffix", "attributes", "tap-piriod", "target-postgres")

    shipped = meltano(*run, env=env)
    assert "Piriod sent 1 attribute the schema does not name: loyalty_tier (4 records)" \
        in shipped.stdout + shipped.stderr
    with postgres.connect("warehouse_attributes") as connection:
        columns = {row[0] for row in connection.execute(COLUMNS)}
    assert "name" in columns and "loyalty_tier" not in columns  # dropped by the loader

    schema = {"customers": {"loyalty_tier": {"type": ["string", "null"]}}}
    named = meltano("run", "--full-refresh", *run[1:],
                    env={**env, "TAP_PIRIOD__SCHEMA": json.dumps(schema)})
    assert "the schema does not name" not in named.stdout + named.stderr
    with postgres.connect("warehouse_attributes") as connection:
        tiers = dict(connection.execute(
            "SELECT id, loyalty_tier FROM piriod.customers").fetchall())
    assert len(tiers) == SANDBOX_CUSTOMERS
    assert {key for key, tier in tiers.items() if tier == "gold"} == ids
    assert {tier for key, tier in tiers.items() if key not in ids} == {None}
