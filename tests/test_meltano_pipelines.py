"""The two pipelines of the README, end to end with real Meltano, plugins from PyPI and databases.

1. Warehouse replication: ``meltano run tap-piriod target-postgres`` (a private PostgreSQL
   15 server) and ``tap-piriod target-duckdb`` (a DuckDB file): every customer becomes a
   row; after changes in the sandbox, the incremental run (state kept by Meltano) moves
   exactly the changed and new customers, and rows are updated, never duplicated.
2. Reverse ETL: ``meltano run tap-postgres target-piriod`` from a ``crm.customers`` table
   edited with SQL: new customers are created, changed ones patched (matched on
   ``tax_id``), a second run writes nothing, rejected rows land in the dead-letter file and
   fail the run.

The project is a copy of the repo's ``meltano.yml`` in a temp dir (the repo's ``.meltano/``
is left alone) whose ``tap-piriod``/``target-piriod`` install this checkout; ``meltano
install`` runs once per session (tests/meltano_helpers.py, shared with the other Meltano
tests). Each test has its own state id (``--state-id-suffix``).
"""

from __future__ import annotations

import json
import subprocess
import urllib.request
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
from meltano_helpers import Meltano, installed_project, piriod_env, postgres_env, start_postgres
from postgres_server import PostgresServer

from piriod_sandbox import SandboxProcess

pytestmark = pytest.mark.meltano

SEED = 250  # tests/conftest.py's sandbox fixture resets to this many customers


@pytest.fixture(scope="module")
def meltano(tmp_path_factory: pytest.TempPathFactory) -> Meltano:
    """The project copy with every plugin installed (shared with the other Meltano tests)."""
    return installed_project(tmp_path_factory)


@pytest.fixture(scope="module")
def postgres() -> Iterator[PostgresServer]:
    """A private PostgreSQL server for the module (fails, never skips, if it can't start)."""
    server = start_postgres()
    yield server
    server.stop()


def instant(text: str) -> datetime:
    """Parse an ISO 8601 instant (``Z`` or an offset)."""
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def create_customer(sandbox: SandboxProcess, body: dict) -> dict:
    """Create a customer through the API, as Piriod's own UI would."""
    request = urllib.request.Request(
        f"{sandbox.url}/customers/", data=json.dumps(body).encode(), method="POST",
        headers={"Authorization": f"Bearer {sandbox.token}", "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def change_customers(sandbox: SandboxProcess, bookmark: str) -> tuple[set, set, set]:
    """Change 6 customers and add 4 in the sandbox.

    Return (changed ids, new ids, every id updated at or after the bookmark): the tap
    re-reads ``updated >= bookmark - lookback_window``, but emits only what it did not
    deliver before, so the next incremental run must move exactly the changed and new.
    """
    changed = set(sandbox.touch(count=6, changes={"website": "https://changed.example.com"},
                                rng_seed=11))
    new = {create_customer(sandbox, {"name": f"Nuevo Cliente {n} SpA", "country": "CL",
                                     "tax_id": f"77.700.00{n}-K",
                                     "email": f"nuevo{n}@example.com"})["id"]
           for n in range(4)}
    updated = {c["id"]: instant(c["updated"]) for c in sandbox.customers()}
    due = {i for i, moment in updated.items() if moment >= instant(bookmark)}
    assert changed | new <= due
    assert all(updated[i] == instant(bookmark) for i in due - changed - new)  # ties only
    return changed, new, due


# -- 1. warehouse replication ------------------------------------------------------------


def test_replication_into_postgres_is_incremental_and_upserts(
        meltano: Meltano, sandbox: SandboxProcess, postgres: PostgresServer) -> None:
    postgres.create_database("warehouse")
    env = {**piriod_env(sandbox), **postgres_env(postgres, "target-postgres", "warehouse")}
    suffix = "pg-replication"
    query = ("SELECT id, name, website, country->>'id', _sdc_batched_at "
             "FROM piriod.customers")

    meltano("run", "--state-id-suffix", suffix, "tap-piriod", "target-postgres", env=env)
    with postgres.connect("warehouse") as connection:
        first = {row[0]: row for row in connection.execute(query).fetchall()}
    customers = {c["id"]: c for c in sandbox.customers()}
    assert len(first) == len(customers) == SEED
    assert first.keys() == customers.keys()
    for customer_id, (_, name, website, country, _) in first.items():
        expected = customers[customer_id]
        assert (name, website) == (expected["name"], expected["website"])
        assert country == (expected["country"] or {}).get("id")

    bookmark = meltano.bookmark(f"dev:tap-piriod-to-target-postgres:{suffix}")
    changed, new, due = change_customers(sandbox, bookmark)
    meltano("run", "--state-id-suffix", suffix, "tap-piriod", "target-postgres", env=env)

    with postgres.connect("warehouse") as connection:
        rows = connection.execute(query).fetchall()
        duplicates = connection.execute(
            "SELECT count(*) - count(DISTINCT id) FROM piriod.customers").fetchone()[0]
    second = {row[0]: row for row in rows}
    assert duplicates == 0
    assert len(rows) == SEED + len(new)
    assert second.keys() == first.keys() | new
    # The incremental run wrote exactly the due rows: only they have a new batch time.
    moved = {i for i, row in second.items() if i not in first or row[4] != first[i][4]}
    assert moved == changed | new  # not the ties at the bookmark: delivered already
    assert moved <= due
    assert {second[i][2] for i in changed} == {"https://changed.example.com"}
    assert {second[i][1] for i in new} == {f"Nuevo Cliente {n} SpA" for n in range(4)}


def test_replication_into_duckdb(meltano: Meltano, sandbox: SandboxProcess,
                                 tmp_path: Path) -> None:
    import duckdb

    database = tmp_path / "warehouse.duckdb"
    env = {**piriod_env(sandbox), "TARGET_DUCKDB_FILEPATH": str(database)}
    suffix = "duckdb-replication"
    query = ("SELECT id, name, website, json_extract_string(country, '$.id'), _sdc_batched_at "
             "FROM piriod.customers")

    def rows() -> list[tuple]:
        with duckdb.connect(str(database), read_only=True) as connection:
            return connection.execute(query).fetchall()

    meltano("run", "--state-id-suffix", suffix, "tap-piriod", "target-duckdb", env=env)
    first = {row[0]: row for row in rows()}
    customers = {c["id"]: c for c in sandbox.customers()}
    # Every customer, including the first of the batch (see the duckdb pin in meltano.yml).
    assert first.keys() == customers.keys()
    for customer_id, (_, name, _, country, _) in first.items():
        assert name == customers[customer_id]["name"]
        assert country == (customers[customer_id]["country"] or {}).get("id")

    bookmark = meltano.bookmark(f"dev:tap-piriod-to-target-duckdb:{suffix}")
    changed, new, due = change_customers(sandbox, bookmark)
    meltano("run", "--state-id-suffix", suffix, "tap-piriod", "target-duckdb", env=env)

    second_rows = rows()
    second = {row[0]: row for row in second_rows}
    assert len(second_rows) == len(second) == SEED + len(new)
    moved = {i for i, row in second.items() if i not in first or row[4] != first[i][4]}
    assert moved == changed | new  # not the ties at the bookmark: delivered already
    assert moved <= due
    assert {second[i][2] for i in changed} == {"https://changed.example.com"}


# -- 2. reverse ETL ----------------------------------------------------------------------

CRM_TABLE = """
CREATE SCHEMA crm;
CREATE TABLE crm.customers (
    tax_id     text PRIMARY KEY,
    name       text NOT NULL,
    email      text,
    country    text,
    updated_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
-- Every edit moves updated_at, tap-postgres's replication key.
CREATE FUNCTION crm.touch() RETURNS trigger LANGUAGE plpgsql AS
    $$ BEGIN NEW.updated_at = clock_timestamp(); RETURN NEW; END $$;
CREATE TRIGGER touch BEFORE UPDATE ON crm.customers
    FOR EACH ROW EXECUTE FUNCTION crm.touch();
"""


@pytest.fixture
def crm(postgres: PostgresServer) -> PostgresServer:
    """A fresh ``crm`` database holding an empty ``crm.customers`` table."""
    postgres.create_database("crm")
    with postgres.connect("crm") as connection:
        connection.execute(CRM_TABLE)
    return postgres


def sql(server: PostgresServer, statement: str, *params: object) -> None:
    """Run one statement in the crm database (the business editing its own table)."""
    with server.connect("crm") as connection:
        connection.execute(statement, params or None)


def summary_line(done: subprocess.CompletedProcess) -> str:
    """Return target-piriod's summary line from Meltano's output."""
    lines = [line for line in (done.stdout + done.stderr).splitlines()
             if "target-piriod summary:" in line]
    assert lines, (done.stdout + done.stderr)[-4000:]
    return lines[-1].split("target-piriod summary:")[1]


def test_reverse_etl_creates_and_patches_then_changes_nothing(
        meltano: Meltano, sandbox: SandboxProcess, crm: PostgresServer) -> None:
    env = {**piriod_env(sandbox), **postgres_env(crm, "tap-postgres", "crm")}
    run = ("run", "--state-id-suffix", "reverse-etl", "tap-postgres", "target-piriod")
    known = sandbox.customers()[:3]
    renamed, new_email, same = (dict(c, country=c["country"]["id"]) for c in known)
    renamed["name"] += " (CRM)"
    new_email["email"] = "pagos@crm.example.com"
    new = [("78.100.001-1", "Cliente CRM Uno SpA", "uno@crm.example.com", "CL"),
           ("78.100.002-2", "Cliente CRM Dos Ltda.", None, "PE"),
           ("78.100.003-3", "Cliente CRM Tres S.A.", "tres@crm.example.com", "MX")]
    for row in [*[(c["tax_id"], c["name"], c["email"], c["country"])
                  for c in (renamed, new_email, same)], *new]:
        sql(crm, "INSERT INTO crm.customers (tax_id, name, email, country) "
                 "VALUES (%s, %s, %s, %s)", *row)
    sandbox.reset_stats()

    done = meltano(*run, env=env)
    assert "created=3 updated=2 unchanged=1" in summary_line(done)
    assert sandbox.stats()["creates"] == 3
    assert sandbox.stats()["updates"] == 2
    by_tax_id = {c["tax_id"]: c for c in sandbox.customers()}
    assert len(by_tax_id) == SEED + 3
    for tax_id, name, email, country in new:
        customer = by_tax_id[tax_id]
        assert (customer["name"], customer["email"], customer["country"]["id"]) == (
            name, email, country)
    assert by_tax_id[renamed["tax_id"]]["name"] == renamed["name"]
    assert by_tax_id[new_email["tax_id"]]["email"] == "pagos@crm.example.com"

    # Nothing was edited: the second run writes nothing and Piriod is unchanged.
    before = sandbox.customers()
    sandbox.reset_stats()
    meltano(*run, env=env)
    assert sandbox.stats()["writes"] == 0
    assert sandbox.customers() == before

    # One edit in SQL travels alone, as a PATCH of that customer.
    sql(crm, "UPDATE crm.customers SET name = %s WHERE tax_id = %s",
        "Cliente CRM Dos S.A.C.", "78.100.002-2")
    sandbox.reset_stats()
    meltano(*run, env=env)
    assert (sandbox.stats()["creates"], sandbox.stats()["updates"]) == (0, 1)
    by_tax_id = {c["tax_id"]: c for c in sandbox.customers()}
    assert by_tax_id["78.100.002-2"]["name"] == "Cliente CRM Dos S.A.C."


def test_reverse_etl_rejects_go_to_the_dead_letter_file_and_fail_the_run(
        meltano: Meltano, sandbox: SandboxProcess, crm: PostgresServer,
        tmp_path: Path) -> None:
    rejects = tmp_path / "rejects.jsonl"
    env = {**piriod_env(sandbox), **postgres_env(crm, "tap-postgres", "crm"),
           "TARGET_PIRIOD_DEAD_LETTER_PATH": str(rejects)}
    run = ("run", "--state-id-suffix", "reverse-etl-rejects", "tap-postgres", "target-piriod")
    rows = [("79.200.001-1", "Válido SpA", "ok@crm.example.com", "CL"),
            ("79.200.002-2", "Correo Malo SpA", "not-an-email", "CL"),   # refused by the target
            ("79.200.003-3", "País Malo SpA", "pais@crm.example.com", "XX")]  # unknown code
    for row in rows:
        sql(crm, "INSERT INTO crm.customers (tax_id, name, email, country) "
                 "VALUES (%s, %s, %s, %s)", *row)

    done = meltano(*run, env=env, check=False)
    assert done.returncode != 0
    assert "rejected=2" in summary_line(done)
    assert "more than max_rejects=0" in done.stdout + done.stderr
    dead = [json.loads(line) for line in rejects.read_text().splitlines()]
    assert sorted(d["key"]["value"] for d in dead) == ["79.200.002-2", "79.200.003-3"]
    assert sandbox.token not in rejects.read_text()
    by_tax_id = {c["tax_id"]: c for c in sandbox.customers()}
    assert "79.200.001-1" in by_tax_id  # the good row was loaded all the same
    assert "79.200.002-2" not in by_tax_id and "79.200.003-3" not in by_tax_id

    # The business fixes the rows in its table; the next run carries them and succeeds.
    sql(crm, "UPDATE crm.customers SET email = 'correo@crm.example.com' "
             "WHERE tax_id = '79.200.002-2'")
    sql(crm, "UPDATE crm.customers SET country = 'CL' WHERE tax_id = '79.200.003-3'")
    done = meltano(*run, env=env)
    assert "created=2" in summary_line(done) and "rejected=0" in summary_line(done)

    # With max_rejects=1, one bad row is dead-lettered without failing the run.
    sql(crm, "INSERT INTO crm.customers (tax_id, name, email, country) "
             "VALUES ('79.200.004-4', 'Otro Malo SpA', 'x@y', 'CL')")
    done = meltano(*run, env={**env, "TARGET_PIRIOD_MAX_REJECTS": "1"})
    assert "rejected=1" in summary_line(done)
    assert json.loads(rejects.read_text().splitlines()[-1])["key"]["value"] == "79.200.004-4"
