"""Airflow runs the Meltano schedules: orchestrate/airflow/dags builds one DAG per schedule.

Airflow lives in its own virtualenv (``make airflow-venv``: .venv-airflow), so everything
Airflow does here is a subprocess of that venv: a DagBag parse that prints what it found as
JSON, and a real ``airflow dags test`` of the replication DAG (SQLite metadata DB in a temp
AIRFLOW_HOME) whose task runs ``meltano run`` against a sandbox and loads DuckDB.

Projects are temp copies of the repo's ``meltano.yml`` (the repo's ``.meltano/`` is left
alone). The DagBag tests need no plugins; the ``dags test`` project installs the two it runs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from piriod_sandbox import SandboxProcess

pytestmark = pytest.mark.meltano

REPO = Path(__file__).resolve().parents[1]
DAGS = REPO / "orchestrate" / "airflow" / "dags"
AIRFLOW_BIN = REPO / ".venv-airflow" / "bin"
MELTANO = Path(sys.executable).parent / "meltano"
REPLICATION = "warehouse-replication-hourly"  # the schedule the `dags test` runs

# Run in .venv-airflow: parse the DAG folder as Airflow's DAG processor would, print the result.
DAGBAG_SCRIPT = r"""
import json, sys
from airflow.dag_processing.dagbag import DagBag

bag = DagBag(sys.argv[1])
dags = {
    dag_id: {
        "schedule": getattr(dag.timetable, "expression", type(dag.timetable).__name__),
        "catchup": dag.catchup,
        "max_active_runs": dag.max_active_runs,
        "tasks": {task.task_id: {"bash_command": task.bash_command, "cwd": task.cwd,
                                 "env": task.env, "append_env": task.append_env}
                  for task in dag.tasks},
    }
    for dag_id, dag in bag.dags.items()
}
print("DAGBAG " + json.dumps({"import_errors": bag.import_errors, "dags": dags}))
"""


def clean_env(**settings: str) -> dict[str, str]:
    """The test's environment minus the developer's Meltano, plugin and Airflow settings."""
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("MELTANO_", "TAP_", "TARGET_", "AIRFLOW"))}
    env.update(MELTANO_SEND_ANONYMOUS_USAGE_STATS="false", NO_COLOR="1", **settings)
    return env


def airflow_env(home: Path, project: Path, **settings: str) -> dict[str, str]:
    """Environment of an Airflow process: its own home and the repo's DAG folder."""
    return clean_env(AIRFLOW_HOME=str(home), AIRFLOW__CORE__DAGS_FOLDER=str(DAGS),
                     AIRFLOW__CORE__LOAD_EXAMPLES="False",
                     MELTANO_PROJECT_ROOT=str(project), **settings)


def run(command: list[str | Path], env: dict[str, str], cwd: Path,
        timeout: float = 600) -> subprocess.CompletedProcess:
    """Run a command; fail the test with its output if it exits non-zero."""
    done = subprocess.run([str(part) for part in command], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        pytest.fail(f"{' '.join(map(str, command))} exited {done.returncode}:\n"
                    f"{(done.stdout + done.stderr)[-6000:]}")
    return done


def meltano(project: Path, *args: str, **settings: str) -> str:
    """Run meltano (the test venv's) in a project; return its stdout."""
    return run([MELTANO, *args], clean_env(**settings), project).stdout


def dagbag(project: Path, home: Path, **settings: str) -> dict:
    """Parse the DAG folder in .venv-airflow for a project; return its DAGs and import errors."""
    done = run([AIRFLOW_BIN / "python", "-c", DAGBAG_SCRIPT, DAGS],
               airflow_env(home, project, **settings), project)
    line = next(line for line in done.stdout.splitlines() if line.startswith("DAGBAG "))
    return json.loads(line.removeprefix("DAGBAG "))


def edit_project(project: Path, edit: Callable[[dict], None]) -> None:
    """Change a project's meltano.yml through its parsed form (comments are lost, no matter)."""
    manifest = project / "meltano.yml"
    data = yaml.safe_load(manifest.read_text())
    edit(data)
    manifest.write_text(yaml.safe_dump(data, sort_keys=False))


def schedules_of(project: Path) -> list[dict]:
    """What ``meltano schedule list --format=json`` says, job and extractor/loader schedules."""
    listed = json.loads(meltano(project, "schedule", "list", "--format=json"))["schedules"]
    return [*listed["job"], *listed["elt"]]


@pytest.fixture(scope="module", autouse=True)
def airflow_installed() -> None:
    """Airflow and Meltano must both be there (fail, never skip, as the other Meltano tests)."""
    if not (AIRFLOW_BIN / "airflow").exists():
        pytest.fail(f"Airflow is not installed in {AIRFLOW_BIN.parent}: make airflow-venv")
    if not MELTANO.exists():
        pytest.fail(f"meltano is not installed next to {sys.executable}: make venv")


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A copy of the repo's meltano.yml, as is (listing schedules installs nothing)."""
    root = tmp_path / "project"
    root.mkdir()
    (root / "meltano.yml").write_text((REPO / "meltano.yml").read_text())
    return root


def default_meltano() -> str:
    """The executable the DAGs use without MELTANO_BIN: the repo's .venv, else PATH's."""
    local = REPO / ".venv" / "bin" / "meltano"
    return str(local) if local.exists() else "meltano"


def test_one_dag_per_schedule_of_meltano_yml(project: Path, tmp_path: Path) -> None:
    schedules = schedules_of(project)
    in_yaml = yaml.safe_load((REPO / "meltano.yml").read_text())["schedules"]
    assert {s["name"] for s in schedules} == {s["name"] for s in in_yaml}
    assert REPLICATION in {s["name"] for s in schedules}

    bag = dagbag(project, tmp_path / "airflow")  # MELTANO_BIN unset: the default

    assert bag["import_errors"] == {}
    assert set(bag["dags"]) == {s["name"] for s in schedules}
    for schedule in schedules:
        dag = bag["dags"][schedule["name"]]
        assert dag["schedule"] == schedule["cron_interval"]
        assert (dag["catchup"], dag["max_active_runs"]) == (False, 1)
        target = (schedule["job"]["name"] if "job" in schedule
                  else f"{schedule['extractor']} {schedule['loader']}")
        [task] = dag["tasks"].values()
        assert task["bash_command"] == (
            f"{default_meltano()} {{{{ meltano_environment_option() }}}} run {target}")
        assert task["cwd"] == str(project)


def test_a_new_schedule_is_a_new_dag_and_meltano_runs_only_when_the_project_changes(
        project: Path, tmp_path: Path) -> None:
    calls = tmp_path / "meltano-calls"
    counting = tmp_path / "meltano"  # the real meltano, counting its calls
    counting.write_text(f'#!/bin/sh\necho "$@" >> "{calls}"\nexec "{MELTANO}" "$@"\n')
    counting.chmod(0o755)
    home = tmp_path / "airflow"

    def parse() -> dict:
        bag = dagbag(project, home, MELTANO_BIN=str(counting))
        assert bag["import_errors"] == {}
        return bag["dags"]

    before = parse()
    assert parse().keys() == before.keys()
    assert calls.read_text().splitlines() == ["schedule list --format=json"]  # once for two

    def add_schedules(data: dict) -> None:
        data["jobs"].append({"name": "test-export", "tasks": ["tap-piriod target-jsonl"]})
        data["schedules"] += [
            {"name": "test-export-weekly", "job": "test-export", "interval": "@weekly"},
            {"name": "test-el-daily", "extractor": "tap-piriod",
             "loader": "target-jsonl", "transform": "skip", "interval": "30 2 * * *",
             "env": {"TARGET_JSONL_DO_TIMESTAMP_FILE": "true"}}]

    edit_project(project, add_schedules)
    after = parse()
    assert len(calls.read_text().splitlines()) == 2
    assert after.keys() == before.keys() | {"test-export-weekly", "test-el-daily"}
    assert {s["name"] for s in schedules_of(project)} == after.keys()
    weekly, daily = after["test-export-weekly"], after["test-el-daily"]
    assert weekly["schedule"] == "0 0 * * 0"
    assert [t["bash_command"] for t in weekly["tasks"].values()] == [
        f"{counting} {{{{ meltano_environment_option() }}}} run test-export"]
    assert daily["schedule"] == "30 2 * * *"
    [task] = daily["tasks"].values()
    assert task["bash_command"].endswith(" run tap-piriod target-jsonl")
    assert (task["env"], task["append_env"]) == ({"TARGET_JSONL_DO_TIMESTAMP_FILE": "true"},
                                                 True)
    parse()
    assert len(calls.read_text().splitlines()) == 2  # cached again


@pytest.mark.parametrize("breakage", ["unknown job", "no meltano"])
def test_when_meltano_fails_the_import_error_says_why(
        project: Path, tmp_path: Path, breakage: str) -> None:
    settings = {}
    if breakage == "unknown job":
        edit_project(project, lambda data: data["schedules"].append(
            {"name": "orphan", "job": "no-such-job", "interval": "@daily"}))
        expected = ["schedule list --format=json` in", "exited 1",
                    "Job 'no-such-job' was not found"]
    else:
        settings["MELTANO_BIN"] = str(tmp_path / "not-installed" / "meltano")
        expected = ["cannot run", "not-installed/meltano", "set MELTANO_BIN"]

    bag = dagbag(project, tmp_path / "airflow", **settings)

    assert bag["dags"] == {}
    [error] = bag["import_errors"].values()
    for words in expected:
        assert words in error


@pytest.fixture(scope="module")
def replication_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project whose tap-piriod is this checkout and whose replication job loads DuckDB.

    The repo's job loads PostgreSQL from BATCH files (tap-piriod--batch) and runs dbt on it
    (tests/test_tap_batch_meltano.py and tests/test_dbt_models.py run it); here the
    warehouse is a DuckDB file so that no server is needed, and the job only loads it with
    tap-piriod, which sends RECORD messages in prod too (target-duckdb reads no BATCH).
    The schedule and job are the same. Only the two plugins the job runs are installed
    (seconds, from uv's cache).
    """
    root = tmp_path_factory.mktemp("airflow-project")
    (root / "meltano.yml").write_text((REPO / "meltano.yml").read_text())

    def to_duckdb(data: dict) -> None:
        for plugin in data["plugins"]["extractors"] + data["plugins"]["loaders"]:
            if plugin.get("pip_url") == "-e .":
                plugin["pip_url"] = f"-e {REPO}"
        [job] = [job for job in data["jobs"] if job["name"] == "warehouse-replication"]
        assert job["tasks"][0].startswith("tap-piriod--batch target-postgres")
        job["tasks"] = ["tap-piriod target-duckdb"]  # RECORD mode, in dev and prod alike

    edit_project(root, to_duckdb)
    meltano(root, "install", "tap-piriod", "target-duckdb")
    return root


@pytest.mark.parametrize(("variable", "worker_env", "expected_env"), [
    ("prod", "dev", "prod"),  # the Airflow Variable wins over the worker's environment
    (None, "dev", "dev"),     # without it, Meltano reads MELTANO_ENVIRONMENT as from a shell
])
def test_airflow_dags_test_runs_the_replication_into_duckdb(
        replication_project: Path, sandbox: SandboxProcess, tmp_path: Path,
        variable: str | None, worker_env: str, expected_env: str) -> None:
    import duckdb

    project = replication_project
    warehouse = tmp_path / "warehouse.duckdb"
    settings = {"AIRFLOW_VAR_MELTANO_ENVIRONMENT": variable} if variable else {}
    env = airflow_env(
        tmp_path / "airflow", project, MELTANO_BIN=str(MELTANO),
        MELTANO_ENVIRONMENT=worker_env, **settings,
        TAP_PIRIOD_API_URL=sandbox.url, TAP_PIRIOD_AUTH_TOKEN=sandbox.token,
        TARGET_DUCKDB_FILEPATH=str(warehouse))
    run([AIRFLOW_BIN / "airflow", "db", "migrate"], env, tmp_path)

    done = run([AIRFLOW_BIN / "airflow", "dags", "test", REPLICATION], env, tmp_path)

    output = done.stdout + done.stderr
    option = f" --environment={variable}" if variable else " "
    assert f"{MELTANO}{option} run warehouse-replication" in output
    assert f"Environment '{expected_env}' is active" in output
    assert f"dag_id={REPLICATION}" in output and "state=success" in output, output[-6000:]
    with duckdb.connect(str(warehouse), read_only=True) as connection:
        rows = connection.execute("SELECT id FROM piriod.customers").fetchall()
    customers = sandbox.customers()
    assert len(rows) == len(customers) > 0
    assert {row[0] for row in rows} == {customer["id"] for customer in customers}
    # Meltano kept the bookmark, under the environment the run was in.
    state_ids = meltano(project, f"--environment={expected_env}", "state", "list").split()
    assert f"{expected_env}:tap-piriod-to-target-duckdb" in state_ids
