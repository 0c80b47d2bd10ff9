"""The dbt project (transform/) on both warehouses, run by Meltano's dbt utilities.

Real processes throughout: the sandbox, Meltano with tap-piriod, target-duckdb 0.8.0 and
target-postgres 0.8.1, dbt 1.10 with dbt-duckdb and dbt-postgres (the ``dbt-duckdb`` and
``dbt-postgres`` utilities of meltano.yml, installed with the other plugins once per session,
tests/meltano_helpers.py), DuckDB files and a private PostgreSQL 15. The models are checked
value for value against what the sandbox holds, so a model reading the wrong key, losing
a contact or missing a deletion fails here.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path

import pytest
import yaml
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

SANDBOX_CUSTOMERS = 40  # the conftest sandbox of this module: 4 pages of PAGE_SIZE
PAGE_SIZE = 10
CUSTOMERS = "analytics.stg_piriod__customers"
CONTACTS = "analytics.stg_piriod__customer_contacts"
CUSTOMER_COLUMNS = (
    "customer_id, name, email, tax_id, currency_code, country_code, country_name, "
    "state_code, state_name, balance, sales, sales_current_period, contact_count, "
    "payment_source_count, created_at, updated_at, is_deleted, deleted_at, extracted_at, "
    "loaded_at")
CONTACT_COLUMNS = "customer_id, contact_id, contact_position, name, email, phone"
DBT_TESTS = 16  # data tests of transform/ (schema tests and singular tests)

Query = Callable[[str], list[tuple]]


@pytest.fixture(scope="module")
def meltano(tmp_path_factory: pytest.TempPathFactory) -> Meltano:
    return installed_project(tmp_path_factory)


@pytest.fixture(scope="module")
def postgres() -> Iterator[PostgresServer]:
    server = start_postgres()
    yield server
    server.stop()


def duckdb_query(database: Path) -> Query:
    """Query a DuckDB file with the project's duckdb (target-duckdb's version, 1.2.2)."""

    def query(sql: str) -> list[tuple]:
        import duckdb

        with duckdb.connect(str(database)) as connection:
            return connection.execute(sql).fetchall()

    return query


def postgres_query(server: PostgresServer, database: str) -> Query:
    def query(sql: str) -> list[tuple]:
        with server.connect(database) as connection:
            cursor = connection.execute(sql)
            return cursor.fetchall() if cursor.description else []

    return query


def money(value: float | None) -> Decimal | None:
    """An amount as the models type it: decimal(38, 6)."""
    return None if value is None else Decimal(str(value)).quantize(Decimal("0.000001"))


def instant(text: str | None) -> datetime | None:
    """An API timestamp as the models hold it: a naive timestamp, UTC."""
    if text is None:
        return None
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(timezone.utc).replace(
        tzinfo=None)


def expected_customer(customer: dict) -> tuple:
    """What stg_piriod__customers must say of a live customer (up to extracted_at)."""
    country, state = customer.get("country") or {}, customer.get("state") or {}
    aggregations = customer.get("aggregations") or {}
    return (customer["id"], customer["name"], customer["email"], customer["tax_id"],
            customer["currency"], country.get("id"), country.get("name"), state.get("id"),
            state.get("name"), money(aggregations.get("balance")),
            money(aggregations.get("sales")), money(aggregations.get("sales_current_period")),
            len(customer.get("contacts") or []), len(customer.get("sources") or []),
            instant(customer["created"]), instant(customer["updated"]), False, None)


def expected_contacts(customers: list[dict]) -> set[tuple]:
    return {(customer["id"], contact["id"], position, contact["name"], contact["email"],
             contact["phone"])
            for customer in customers
            for position, contact in enumerate(customer.get("contacts") or [], start=1)}


def modelled_customers(query: Query) -> dict[str, tuple]:
    """stg_piriod__customers by id."""
    return {row[0]: row for row in query(f"SELECT {CUSTOMER_COLUMNS} FROM {CUSTOMERS}")}


def assert_models_match(query: Query, customers: list[dict],
                        deleted: dict[str, dict] | None = None,
                        stamped: bool = True) -> dict[str, tuple]:
    """The models hold the sandbox's customers (and the deleted ones flagged), exactly.

    ``stamped``: the live rows came from RECORD messages, so they carry the loader's
    stamps; rows last written from BATCH files (the PostgreSQL job) carry none.
    """
    deleted = deleted or {}
    modelled = modelled_customers(query)
    assert modelled.keys() == {c["id"] for c in customers} | deleted.keys()
    for customer in customers:
        row = modelled[customer["id"]]
        assert row[:18] == expected_customer(customer), customer["id"]
        # extracted_at, loaded_at: the Singer stamps, renamed (NULL for BATCH rows)
        assert (row[18] is not None, row[19] is not None) == (stamped, stamped), row
    for customer_id, customer in deleted.items():
        row = modelled[customer_id]
        assert row[:16] == expected_customer(customer)[:16]
        assert row[16] is True and row[17] is not None, row  # is_deleted, deleted_at
    contacts = set(query(f"SELECT {CONTACT_COLUMNS} FROM {CONTACTS}"))
    assert contacts == expected_contacts([*customers, *deleted.values()])
    # Real data to compare: several countries and states, customers with 0, 1 and more contacts.
    assert len({row[5] for row in modelled.values()}) >= 3
    assert {0, 1} <= {row[12] for row in modelled.values()}
    assert max(row[12] for row in modelled.values()) >= 2
    return modelled


def assert_dbt_ran(output: str) -> None:
    """Both dbt commands ran and passed: two models built, every data test passing."""
    assert "Done. PASS=2 WARN=0 ERROR=0 SKIP=0" in output, output[-6000:]
    assert f"Done. PASS={DBT_TESTS} WARN=0 ERROR=0 SKIP=0" in output, output[-6000:]


# -- DuckDB ---------------------------------------------------------------------------


def duckdb_env(sandbox: SandboxProcess, database: Path, **extra: str) -> dict[str, str]:
    return {**piriod_env(sandbox), "TARGET_DUCKDB_FILEPATH": str(database),
            "TAP_PIRIOD_PAGE_SIZE": str(PAGE_SIZE), **extra}


def test_duckdb_job_models_every_customer_and_contact_and_the_file_stays_shared(
        meltano: Meltano, sandbox: SandboxProcess, tmp_path: Path) -> None:
    """tap, target-duckdb, dbt run, dbt test; then target-duckdb appends to dbt's file."""
    database = tmp_path / "warehouse.duckdb"
    query = duckdb_query(database)
    env = duckdb_env(sandbox, database)
    suffix = "dbt-duckdb"

    done = meltano("run", "--state-id-suffix", suffix, "warehouse-replication-duckdb", env=env)
    assert_dbt_ran(done.stdout + done.stderr)
    # Read with duckdb 1.2.2, target-duckdb's: the file dbt wrote is still its format.
    before = assert_models_match(query, sandbox.customers())

    # A customer retired the way the README's DuckDB recipe does it (an ISO text stamp).
    retired = sorted(before)[0]
    query("UPDATE piriod.customers SET _sdc_deleted_at = '2026-03-01T10:00:00.000000Z' "
          f"WHERE id = '{retired}'")
    # Changes in Piriod; target-duckdb (duckdb 1.2.2) appends to the file dbt wrote into.
    touched = set(sandbox.touch(count=3, changes={"website": "https://edited.example"},
                                rng_seed=5))
    assert retired not in touched
    done = meltano("run", "--state-id-suffix", suffix, "warehouse-replication-duckdb", env=env)
    assert_dbt_ran(done.stdout + done.stderr)

    customers = sandbox.customers()
    gone = next(c for c in customers if c["id"] == retired)
    after = assert_models_match(query, [c for c in customers if c["id"] != retired],
                                deleted={retired: gone})
    assert after[retired][17] == datetime(2026, 3, 1, 10, 0)
    websites = dict(query(f"SELECT customer_id, website FROM {CUSTOMERS}"))
    assert {websites[i] for i in touched} == {"https://edited.example"}
    contacts_of_retired = query(f"SELECT is_customer_deleted FROM {CONTACTS} "
                                f"WHERE customer_id = '{retired}'")
    assert {row[0] for row in contacts_of_retired} <= {True}


def test_duckdb_file_first_opened_by_dbt_stays_readable_by_target_duckdb(
        meltano: Meltano, sandbox: SandboxProcess, tmp_path: Path) -> None:
    """dbt's DuckDB creates the file (a `dbt debug` before any load): target-duckdb opens it.

    A newer DuckDB in the dbt utility than target-duckdb's would write a file 1.2.2 cannot
    read ("Trying to read a database file with version number ..."); the pin keeps one.
    """
    database = tmp_path / "warehouse.duckdb"
    env = duckdb_env(sandbox, database)
    done = meltano("invoke", "dbt-duckdb:debug", env=env)
    assert "All checks passed!" in done.stdout + done.stderr
    assert database.exists()

    meltano("run", "--state-id-suffix", "dbt-duckdb-first", "warehouse-replication-duckdb",
            env=env)
    assert_models_match(duckdb_query(database), sandbox.customers())


def test_models_work_without_the_singer_metadata_columns(
        meltano: Meltano, sandbox: SandboxProcess, tmp_path: Path) -> None:
    """target-duckdb with add_metadata_columns off writes no _sdc_*: the models still build."""
    database = tmp_path / "warehouse.duckdb"
    query = duckdb_query(database)
    env = duckdb_env(sandbox, database, TARGET_DUCKDB_ADD_METADATA_COLUMNS="false")

    done = meltano("run", "--state-id-suffix", "dbt-no-sdc", "warehouse-replication-duckdb",
                   env=env)
    assert_dbt_ran(done.stdout + done.stderr)
    columns = {row[0] for row in query("SELECT column_name FROM information_schema.columns "
                                       "WHERE table_schema = 'piriod'")}
    assert not {c for c in columns if c.startswith("_sdc_")}
    modelled = modelled_customers(query)
    assert len(modelled) == SANDBOX_CUSTOMERS
    assert {row[16:] for row in modelled.values()} == {(False, None, None, None)}
    for customer in sandbox.customers():
        assert modelled[customer["id"]][:16] == expected_customer(customer)[:16]


def test_dbt_tests_fail_on_bad_data_and_freshness_reads_the_extraction_stamp(
        meltano: Meltano, sandbox: SandboxProcess, tmp_path: Path) -> None:
    """The data tests are real: bad data fails `dbt test` (so the job), naming the tests."""
    database = tmp_path / "warehouse.duckdb"
    query = duckdb_query(database)
    env = duckdb_env(sandbox, database)
    meltano("run", "--state-id-suffix", "dbt-broken", "tap-piriod", "target-duckdb", env=env)

    fresh = meltano("invoke", "dbt-duckdb:freshness", env=env)
    assert "PASS freshness of piriod.customers" in fresh.stdout + fresh.stderr

    # Stale: the newest extraction 8 days ago (error_after is 7 days).
    query("UPDATE piriod.customers SET _sdc_extracted_at = current_date - INTERVAL 8 DAY")
    stale = meltano("invoke", "dbt-duckdb:freshness", env=env, check=False)
    assert stale.returncode != 0
    assert "ERROR STALE freshness of piriod.customers" in stale.stdout + stale.stderr

    # Data the models must refuse: a country that is no ISO code, a contact listed twice.
    [(twice,)] = query("SELECT id FROM piriod.customers WHERE json_array_length(contacts) = 1 "
                       "ORDER BY id LIMIT 1")
    query("UPDATE piriod.customers SET country = '{\"id\": \"Chile\"}' "
          f"WHERE id <> '{twice}' AND country IS NOT NULL AND id = (SELECT min(id) "
          f"FROM piriod.customers WHERE id <> '{twice}')")
    query("UPDATE piriod.customers SET contacts = json_array(contacts->0, contacts->0) "
          f"WHERE id = '{twice}'")
    done = meltano("run", "dbt-duckdb:run", "dbt-duckdb:test", env=env, check=False)
    output = done.stdout + done.stderr
    assert done.returncode != 0
    assert "Done. PASS=2 WARN=0 ERROR=0 SKIP=0" in output, output[-6000:]  # the models built
    failed = set(re.findall(r"Failure in test (\w+)", output))
    assert failed == {
        "piriod_shape_stg_piriod__customers_country_code___A_Z_2_",
        "piriod_unique_combination_stg_piriod__customer_contacts_customer_id__contact_id",
    }, output[-6000:]


def test_reconcile_duckdb_job_rebuilds_the_models_with_the_deleted_customer_flagged(
        meltano: Meltano, sandbox: SandboxProcess, tmp_path: Path) -> None:
    """reconcile-duckdb ends with dbt run and dbt test: `is_deleted` shows without waiting."""
    # The job's SQL steps run the repo's examples/duckdb/ files (the project copy has none).
    shutil.copytree(REPO / "examples" / "duckdb", meltano.root / "examples" / "duckdb",
                    dirs_exist_ok=True)
    database = tmp_path / "warehouse.duckdb"
    query = duckdb_query(database)
    env = duckdb_env(sandbox, database, DUCKDB_SQL_FILEPATH=str(database))
    suffix = "dbt-reconcile-duckdb"
    meltano("run", "--state-id-suffix", suffix, "warehouse-replication-duckdb", env=env)
    assert_models_match(query, sandbox.customers())

    doomed = next(c for c in sandbox.customers() if len(c.get("contacts") or []) >= 1)
    assert sandbox.delete([doomed["id"]]) == [doomed["id"]]
    done = meltano("run", "--state-id-suffix", suffix, "reconcile-duckdb", env=env)
    assert_dbt_ran(done.stdout + done.stderr)
    assert_models_match(query, sandbox.customers(), deleted={doomed["id"]: doomed})
    flags = set(query(f"SELECT customer_id, is_customer_deleted FROM {CONTACTS}"))
    assert {flag for customer_id, flag in flags if customer_id == doomed["id"]} == {True}


# -- PostgreSQL -------------------------------------------------------------------------


def test_postgres_job_models_and_a_reconcile_flags_the_deleted_customer(
        meltano: Meltano, sandbox: SandboxProcess, postgres: PostgresServer) -> None:
    """warehouse-replication (BATCH files), a customer deleted in Piriod, the reconcile job.

    The hourly job loads from BATCH files, whose rows target-postgres stamps with nothing;
    the reconcile job reads in RECORD mode (stamps every row), retires the deleted
    customer and rebuilds the models itself.
    """
    postgres.create_database("dbt_models")
    query = postgres_query(postgres, "dbt_models")
    env = {**piriod_env(sandbox), **postgres_env(postgres, "target-postgres", "dbt_models"),
           "TAP_PIRIOD_PAGE_SIZE": str(PAGE_SIZE)}
    suffix = "dbt-postgres"

    done = meltano("run", "--state-id-suffix", suffix, "warehouse-replication", env=env)
    assert_dbt_ran(done.stdout + done.stderr)
    before = assert_models_match(query, sandbox.customers(), stamped=False)
    assert query(f"SELECT count(*) FROM {CUSTOMERS} WHERE is_deleted") == [(0,)]

    # Delete, in Piriod, a customer with contacts; the full read retires its row.
    doomed = next(c for c in sandbox.customers() if len(c.get("contacts") or []) >= 1)
    assert sandbox.delete([doomed["id"]]) == [doomed["id"]]
    done = meltano("run", "--state-id-suffix", suffix, "reconcile", env=env)
    assert_dbt_ran(done.stdout + done.stderr)  # the job's own dbt run and dbt test

    after = assert_models_match(query, sandbox.customers(), deleted={doomed["id"]: doomed})
    assert after.keys() == before.keys()
    assert query(f"SELECT count(*) FROM {CUSTOMERS} WHERE NOT is_deleted") == [
        (SANDBOX_CUSTOMERS - 1,)]
    [(deleted_at, source_deleted_at)] = query(
        f"SELECT m.deleted_at, s._sdc_deleted_at FROM {CUSTOMERS} m "
        f"JOIN piriod.customers s ON s.id = m.customer_id WHERE m.customer_id = '{doomed['id']}'")
    assert deleted_at == source_deleted_at is not None
    flags = set(query(f"SELECT customer_id, is_customer_deleted FROM {CONTACTS}"))
    assert {flag for customer_id, flag in flags if customer_id == doomed["id"]} == {True}
    assert {flag for customer_id, flag in flags if customer_id != doomed["id"]} == {False}


# -- the project ----------------------------------------------------------------------


def test_utilities_are_pinned_and_dbt_duckdb_runs_target_duckdbs_duckdb() -> None:
    """What installs offline, pinned; one DuckDB version for the loader and dbt."""
    plugins = yaml.safe_load((REPO / "meltano.yml").read_text())["plugins"]
    utilities = {plugin["name"]: plugin["pip_url"].split() for plugin in plugins["utilities"]
                 if plugin["name"].startswith("dbt-")}
    assert utilities == {
        "dbt-duckdb": ["dbt-core==1.10.23", "dbt-duckdb==1.10.1", "duckdb==1.2.2",
                       "meltano-dbt-ext==0.5.0"],
        "dbt-postgres": ["dbt-core==1.10.23", "dbt-postgres==1.10.2", "meltano-dbt-ext==0.5.0"],
    }
    [target_duckdb] = [p for p in plugins["loaders"] if p["name"] == "target-duckdb"]
    duckdb_pins = [r for r in target_duckdb["pip_url"].split() if r.startswith("duckdb==")]
    assert duckdb_pins == [r for r in utilities["dbt-duckdb"] if r.startswith("duckdb==")]
