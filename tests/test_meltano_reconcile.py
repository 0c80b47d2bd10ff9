"""Deletions reach the warehouse: the ``reconcile`` job, end to end with real Meltano.

``meltano run reconcile`` is ``tap-piriod--reconcile target-postgres``: tap-piriod forced
to FULL_TABLE, whose records carry a table version and whose ACTIVATE_VERSION comes after
the last record of a complete read; target-postgres (``activate_version: true``) then
retires every row an older read (or an incremental run: no version) brought, so customers
deleted in Piriod get ``_sdc_deleted_at`` set, or their rows deleted with ``hard_delete``.

Real processes throughout: the sandbox, a private PostgreSQL 15, Meltano and its plugins
(installed once per session with the other Meltano tests, tests/meltano_helpers.py). The
sandbox holds 40 customers read 10 per page, so a full read is 4 pages.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from meltano_helpers import (
    REPO,
    Meltano,
    installed_project,
    piriod_env,
    postgres_env,
    start_postgres,
)
from postgres_server import PostgresServer

from piriod_sandbox import SandboxProcess

pytestmark = pytest.mark.meltano

CUSTOMERS = SANDBOX_CUSTOMERS = 40  # the conftest sandbox here: 4 pages of PAGE_SIZE
PAGE_SIZE = 10
TABLE = "piriod.customers"
# What a customer's row holds that the reconcile must leave alone (besides _sdc_*).
BUSINESS_COLUMNS = ("id, name, email, tax_id, website, phone, address, currency, country, "
                    "state, metadata, contacts, aggregations, created, updated")


@pytest.fixture(scope="module")
def meltano(tmp_path_factory: pytest.TempPathFactory) -> Meltano:
    return installed_project(tmp_path_factory)


@pytest.fixture(scope="module")
def postgres() -> Iterator[PostgresServer]:
    server = start_postgres()
    yield server
    server.stop()



class Warehouse:
    """A fresh database of the test server, read the way an analyst would."""

    def __init__(self, server: PostgresServer, database: str) -> None:
        server.create_database(database)
        self.server, self.database = server, database

    def query(self, sql: str) -> list[tuple]:
        with self.server.connect(self.database) as connection:
            return connection.execute(sql).fetchall()

    def business_rows(self) -> dict[str, tuple]:
        """Return every row's customer values by id."""
        return {row[0]: row for row in self.query(f"SELECT {BUSINESS_COLUMNS} FROM {TABLE}")}

    def deletion_marks(self) -> dict[str, tuple]:
        """Return ``(_sdc_deleted_at, _sdc_table_version)`` of every row by id."""
        rows = self.query(f"SELECT id, _sdc_deleted_at, _sdc_table_version FROM {TABLE}")
        return {row[0]: row[1:] for row in rows}


def run(meltano: Meltano, job: str, suffix: str, env: dict[str, str],
        check: bool = True):  # -> subprocess.CompletedProcess
    return meltano("run", "--state-id-suffix", suffix, job, env=env, check=check)


def environment(sandbox: SandboxProcess, postgres: PostgresServer, database: str,
                **extra: str) -> dict[str, str]:
    return {**piriod_env(sandbox), **postgres_env(postgres, "target-postgres", database),
            "TAP_PIRIOD_PAGE_SIZE": str(PAGE_SIZE), **extra}


def delete_two(sandbox: SandboxProcess) -> set[str]:
    """Delete a customer of the first page and one of the last, behind the API's back."""
    ids = [customer["id"] for customer in sandbox.customers()]
    assert len(ids) == CUSTOMERS
    doomed = [ids[3], ids[CUSTOMERS - 4]]
    assert set(sandbox.delete(doomed)) == set(doomed)
    assert not {c["id"] for c in sandbox.customers()} & set(doomed)
    return set(doomed)


def assert_matches_sandbox(rows: dict[str, tuple], sandbox: SandboxProcess) -> None:
    """The surviving rows hold what Piriod holds (name, email, tax id, country)."""
    for customer in sandbox.customers():
        _, name, email, tax_id, *_ = rows[customer["id"]]
        assert (name, email, tax_id) == (customer["name"], customer["email"],
                                         customer["tax_id"])


def test_reconcile_marks_deleted_customers_and_leaves_the_rest_alone(
        meltano: Meltano, sandbox: SandboxProcess, postgres: PostgresServer) -> None:
    """Hourly incremental load, two deletions in Piriod, reconcile: two rows soft-deleted."""
    warehouse = Warehouse(postgres, "reconcile_soft")
    env = environment(sandbox, postgres, "reconcile_soft")
    suffix = "reconcile-soft"

    run(meltano, "warehouse-replication", suffix, env)  # the hourly job, incremental
    before = warehouse.business_rows()
    assert len(before) == CUSTOMERS
    # Incremental runs send no table version: their rows count as older than any read.
    assert set(warehouse.deletion_marks().values()) == {(None, None)}
    hourly_state = meltano.state(f"dev:tap-piriod--batch-to-target-postgres:{suffix}")

    deleted = delete_two(sandbox)
    done = run(meltano, "reconcile", suffix, env)
    assert "Beginning sync of 'customers' in full_table mode" in done.stdout + done.stderr

    after = warehouse.business_rows()
    marks = warehouse.deletion_marks()
    assert len(after) == CUSTOMERS  # soft delete: every row is still there
    assert {i for i, (deleted_at, _) in marks.items() if deleted_at is not None} == deleted
    survivors = after.keys() - deleted
    assert len(survivors) == CUSTOMERS - 2
    assert {i: after[i] for i in survivors} == {i: before[i] for i in survivors}
    assert {i: after[i] for i in deleted} == {i: before[i] for i in deleted}
    assert_matches_sandbox(after, sandbox)
    # Every survivor carries the reconcile's table version; the deleted rows do not.
    versions = {marks[i][1] for i in survivors}
    assert len(versions) == 1 and None not in versions
    assert {marks[i][1] for i in deleted} == {None}
    # The reconcile plugin has its own state: the hourly job's bookmark is untouched.
    assert meltano.state(f"dev:tap-piriod--batch-to-target-postgres:{suffix}") == hourly_state

    # A live row retired by mistake (as an hourly run overlapping a reconcile would leave
    # it): the next reconcile rewrites it. Nothing else is retired, and the deleted rows
    # keep the time they were first found gone.
    wrongly_retired = sorted(survivors)[0]
    warehouse.query(f"UPDATE {TABLE} SET _sdc_deleted_at = now() "
                    f"WHERE id = '{wrongly_retired}' RETURNING id")
    run(meltano, "reconcile", suffix, env)
    again = warehouse.deletion_marks()
    assert {i for i, (deleted_at, _) in again.items() if deleted_at is not None} == deleted
    assert {i: again[i][0] for i in deleted} == {i: marks[i][0] for i in deleted}
    assert warehouse.business_rows() == after


def test_reconcile_with_hard_delete_removes_the_rows(
        meltano: Meltano, sandbox: SandboxProcess, postgres: PostgresServer) -> None:
    """A first reconcile loads everything; after two deletions the next one drops them."""
    warehouse = Warehouse(postgres, "reconcile_hard")
    env = environment(sandbox, postgres, "reconcile_hard", TARGET_POSTGRES_HARD_DELETE="true")
    suffix = "reconcile-hard"

    run(meltano, "reconcile", suffix, env)
    before = warehouse.business_rows()
    assert before.keys() == {c["id"] for c in sandbox.customers()}
    assert len(before) == CUSTOMERS

    deleted = delete_two(sandbox)
    run(meltano, "reconcile", suffix, env)

    after = warehouse.business_rows()
    assert len(after) == CUSTOMERS - 2
    assert after.keys() == before.keys() - deleted
    assert after == {i: before[i] for i in after}  # the others, value for value
    assert_matches_sandbox(after, sandbox)
    assert {deleted_at for deleted_at, _ in warehouse.deletion_marks().values()} == {None}


def test_a_reconcile_that_fails_halfway_deletes_nothing(
        meltano: Meltano, sandbox: SandboxProcess, postgres: PostgresServer) -> None:
    """Pages 3 and on fail: the run exits non-zero and no row is retired; healed, it is."""
    warehouse = Warehouse(postgres, "reconcile_failed")
    env = environment(sandbox, postgres, "reconcile_failed", TAP_PIRIOD_MAX_RETRIES="1")
    suffix = "reconcile-failed"

    run(meltano, "reconcile", suffix, env)
    before = warehouse.business_rows()
    assert len(before) == CUSTOMERS
    deleted = delete_two(sandbox)

    sandbox.break_listing(fault="500", from_page=3)
    sandbox.reset_stats()
    done = run(meltano, "reconcile", suffix, env, check=False)
    output = done.stdout + done.stderr
    assert done.returncode != 0, output[-4000:]
    assert "still failing after" in output, output[-4000:]
    statuses = sandbox.stats()["by_status"]
    assert statuses.get("200", 0) >= 2 and statuses.get("500", 0) >= 1, statuses  # halfway

    marks = warehouse.deletion_marks()
    assert len(marks) == CUSTOMERS  # nothing deleted ...
    assert {deleted_at for deleted_at, _ in marks.values()} == {None}  # ... nor marked
    assert warehouse.business_rows() == before

    sandbox.heal_listing()
    run(meltano, "reconcile", suffix, env)
    after = warehouse.business_rows()
    marks = warehouse.deletion_marks()
    assert len(after) == CUSTOMERS
    assert {i for i, (deleted_at, _) in marks.items() if deleted_at is not None} == deleted
    assert {i: after[i] for i in after.keys() - deleted} == {
        i: before[i] for i in before.keys() - deleted}
    assert_matches_sandbox(after, sandbox)


def test_a_reconcile_while_piriod_changes_soft_deletes_no_live_customer(
        meltano: Meltano, sandbox: SandboxProcess, postgres: PostgresServer) -> None:
    """Deletes and a late insert in the middle of the creation order during the read.

    Exactly before the reconcile's 3rd list request (the sandbox's churn control), two of
    the first ten customers are deleted and one is committed among them: every later row
    shifts, and a single read misses live customers at a page edge, which
    ACTIVATE_VERSION would then soft-delete. Only the two deleted before the reconcile
    are marked.
    """
    warehouse = Warehouse(postgres, "reconcile_churn")
    env = environment(sandbox, postgres, "reconcile_churn")
    suffix = "reconcile-churn"

    run(meltano, "warehouse-replication", suffix, env)
    assert len(warehouse.business_rows()) == CUSTOMERS

    deleted = delete_two(sandbox)  # before the reconcile: these must be retired
    sandbox.set_churn(at=3, deletes=2, inserts=1, within=PAGE_SIZE, rng_seed=11)
    done = run(meltano, "reconcile", suffix, env)
    churn = sandbox.churn()
    assert churn["applied"] == 1

    marks = warehouse.deletion_marks()
    live = {c["id"] for c in sandbox.customers()}
    retired = {i for i, (deleted_at, _) in marks.items() if deleted_at is not None}
    assert not retired & live, f"live customers soft-deleted: {sorted(retired & live)}"
    # Those deleted during the read were read alive in its first pass: the next
    # reconcile retires them; a live one is never retired.
    assert retired == deleted
    assert live <= marks.keys()  # the late insert arrived too
    assert_matches_sandbox(warehouse.business_rows(), sandbox)
    output = done.stdout + done.stderr
    assert "moved while it was read" in output, output[-4000:]


# -- DuckDB: target-duckdb ignores ACTIVATE_VERSION; the README's SQL recipe instead ----------


def readme_retire_sql() -> str:
    """Return the DuckDB retire statement exactly as the README documents it."""
    blocks = re.findall(r"```sql\n(.*?)```", (REPO / "README.md").read_text(), re.DOTALL)
    found = [block for block in blocks if block.startswith("-- DuckDB: retire the customers")]
    assert len(found) == 1, "README.md: the DuckDB recipe's SQL block is missing"
    return found[0]


def test_duckdb_ignores_activate_version_and_the_readme_recipe_retires_the_deleted(
        meltano: Meltano, sandbox: SandboxProcess, tmp_path: Path) -> None:
    import duckdb

    database = tmp_path / "warehouse.duckdb"
    env = {**piriod_env(sandbox), "TARGET_DUCKDB_FILEPATH": str(database),
           "TAP_PIRIOD_PAGE_SIZE": str(PAGE_SIZE)}
    full_read = {**env, "TARGET_DUCKDB_DEFAULT_TARGET_SCHEMA": "piriod_full"}
    suffix = "reconcile-duckdb"

    def query(sql: str) -> list[tuple]:
        with duckdb.connect(str(database)) as connection:
            return connection.execute(sql).fetchall()

    def rows() -> dict[str, tuple]:
        return {row[0]: row for row in query(
            f"SELECT id, name, email, tax_id, website, country::VARCHAR, updated, "
            f"_sdc_deleted_at FROM {TABLE}")}

    meltano("run", "--state-id-suffix", suffix, "tap-piriod", "target-duckdb", env=env)
    before = rows()
    assert len(before) == CUSTOMERS
    deleted = delete_two(sandbox)

    # The full-table variant straight into the table: every row rewritten, none retired.
    meltano("run", "--state-id-suffix", suffix, "tap-piriod--reconcile", "target-duckdb",
            env=env)
    assert rows() == before

    # The README's recipe: an emptied schema of its own, the full read, then the SQL.
    query("DROP TABLE IF EXISTS piriod_full.customers")
    meltano("run", "--state-id-suffix", suffix, "tap-piriod--reconcile", "target-duckdb",
            env=full_read)
    assert len(query("SELECT id FROM piriod_full.customers")) == CUSTOMERS - 2
    query(readme_retire_sql())

    after = rows()
    assert len(after) == CUSTOMERS
    assert {i for i, row in after.items() if row[-1] is not None} == deleted
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", after[i][-1])
               for i in deleted)
    assert {i: after[i][:-1] for i in after} == {i: before[i][:-1] for i in before}
    # Run again with nothing more deleted: nothing more retired, the first marks kept.
    query(readme_retire_sql())
    assert rows() == after
