"""One Airflow DAG per schedule of the Meltano project, each a single ``meltano run`` task.

The schedules come from ``meltano schedule list --format=json``, so a schedule added to
``meltano.yml`` becomes a DAG with no change here. Airflow parses this file often (every
``min_file_process_interval`` on the DAG processor, and on a worker before each task), and
that command takes a second or more, so its answer is cached in
``<project>/.meltano/airflow/schedules.json`` and asked again only when ``meltano.yml`` (or
a file it includes) changes. If ``meltano`` fails, the exception raised here carries its
output, so the DAG import error in Airflow says why.

Settings, as environment variables of the DAG processor and the workers:

- ``MELTANO_PROJECT_ROOT``: the Meltano project (default: the repository holding this file);
- ``MELTANO_BIN``: the ``meltano`` executable (default: the repository's
  ``.venv/bin/meltano`` if there is one, else ``meltano`` on ``PATH``);
- the Airflow Variable ``MELTANO_ENVIRONMENT`` (or ``AIRFLOW_VAR_MELTANO_ENVIRONMENT``),
  read when a task runs. When it is unset, Meltano chooses as it does from a shell
  (``MELTANO_ENVIRONMENT`` on the worker, then ``.env``, then ``default_environment``).

Every DAG has ``max_active_runs=1`` and no catchup: the bookmarks live in Meltano's state
backend, and two overlapping runs of one pipeline would read and write the same state.
Retries are Airflow's ``[core] default_task_retries`` (0 unless the deployment says
otherwise): a failed run leaves the bookmark where it was, and the next run resumes there.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import os
import shlex
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pendulum
import yaml
from airflow.providers.standard.operators.bash import BashOperator
from airflow.sdk import DAG, Variable

# orchestrate/airflow/dags/<this file>: three levels below the repository root.
REPO_ROOT = Path(__file__).resolve().parents[3]
CACHE_PATH = Path(".meltano", "airflow", "schedules.json")
# Below Airflow's default dagbag_import_timeout (30 s), so that a hung meltano is reported
# as such rather than as an anonymous import timeout.
LIST_TIMEOUT_SECONDS = 25
# A fixed past date: with catchup off, the first run is the next (or latest) cron tick.
START_DATE = pendulum.datetime(2024, 1, 1, tz="UTC")
# Intervals with no cron expression: run once, or only when triggered.
NON_CRON_INTERVALS = {"@once": "@once", "@manual": None, "@none": None}


def project_root() -> Path:
    """Return the Meltano project directory: ``MELTANO_PROJECT_ROOT`` or this repository."""
    return Path(os.environ.get("MELTANO_PROJECT_ROOT") or REPO_ROOT).resolve()


def meltano_bin() -> str:
    """Return the meltano executable to run.

    Airflow and Meltano live in separate virtualenvs (they pin many of the same libraries),
    so ``meltano`` is usually not on Airflow's ``PATH``; the repository's own ``.venv`` is
    the next best guess after an explicit ``MELTANO_BIN``.
    """
    if os.environ.get("MELTANO_BIN"):
        return os.environ["MELTANO_BIN"]
    local = REPO_ROOT / ".venv" / "bin" / "meltano"
    return str(local) if local.exists() else "meltano"


def project_fingerprint(root: Path) -> str:
    """Hash ``meltano.yml`` and the files it includes: the schedules can only change with them.

    Contents rather than mtimes, so that a checkout or a copy that keeps the same text does
    not invalidate the cache, and an edit within the same second does.
    """
    manifest = root / "meltano.yml"
    if not manifest.is_file():
        raise FileNotFoundError(f"no meltano.yml in {root}: set MELTANO_PROJECT_ROOT")
    text = manifest.read_bytes()
    digest = hashlib.sha256(text)
    for pattern in included_patterns(text):
        for name in sorted(glob.glob(pattern, root_dir=root)):
            digest.update(name.encode() + b"\0" + (root / name).read_bytes())
    return digest.hexdigest()


def included_patterns(manifest: bytes) -> list[str]:
    """Return the ``include_paths`` of a ``meltano.yml``.

    Broken YAML gives none: meltano then fails on it and explains, which is the message the
    import error should carry.
    """
    try:
        project = yaml.safe_load(manifest)
    except yaml.YAMLError:
        return []
    return (project.get("include_paths") if isinstance(project, dict) else None) or []


def list_schedules(root: Path, meltano: str) -> dict[str, list[dict[str, Any]]]:
    """Run ``meltano schedule list --format=json``; raise with meltano's own words if it fails."""
    command = [meltano, "schedule", "list", "--format=json"]
    try:
        done = subprocess.run(command, cwd=root, capture_output=True, text=True,
                              timeout=LIST_TIMEOUT_SECONDS, check=False)
    except FileNotFoundError as error:
        raise RuntimeError(f"cannot run {meltano!r} ({error}): set MELTANO_BIN") from error
    except subprocess.TimeoutExpired as error:
        raise RuntimeError(f"`{shlex.join(command)}` in {root} took more than "
                           f"{LIST_TIMEOUT_SECONDS} s") from error
    if done.returncode != 0:
        raise RuntimeError(f"`{shlex.join(command)}` in {root} exited {done.returncode}:\n"
                           f"{(done.stdout + done.stderr)[-4000:]}")
    try:
        return json.loads(done.stdout)["schedules"]
    except (ValueError, KeyError) as error:
        raise RuntimeError(f"`{shlex.join(command)}` in {root} did not print the expected "
                           f"JSON ({error!r}):\n{done.stdout[:2000]}") from error


def write_atomically(path: Path, text: str) -> None:
    """Write a file under a temporary name, then rename it.

    The DAG processor and workers may parse at the same time: none may read half a file.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    try:
        with os.fdopen(handle, "w") as file:
            file.write(text)
        os.replace(name, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(name)
        raise


def cached_schedules(root: Path, meltano: str) -> dict[str, list[dict[str, Any]]]:
    """Return the project's schedules, listing them with meltano only if the project changed."""
    key = project_fingerprint(root)
    cache = root / CACHE_PATH
    try:
        cached = json.loads(cache.read_text())
        if cached["key"] == key:
            return cached["schedules"]
    except (OSError, ValueError, KeyError, TypeError):
        pass  # no cache yet, or an unreadable one: list again
    schedules = list_schedules(root, meltano)
    with contextlib.suppress(OSError):  # a read-only project lists on every parse instead
        write_atomically(cache, json.dumps({"key": key, "schedules": schedules}))
    return schedules


def run_arguments(schedule: dict[str, Any]) -> list[str]:
    """Return what follows ``meltano run`` for a schedule: its job, or its extractor and loader.

    An extractor/loader schedule runs as ``meltano run <extractor> <loader>``, so its state
    id is the same as when the pipeline is run by hand (``<environment>:<tap>-to-<target>``).
    """
    if "job" in schedule:
        return [schedule["job"]["name"]]
    return [schedule["extractor"], schedule["loader"]]


def airflow_schedule(schedule: dict[str, Any]) -> str | None:
    """Return the Airflow schedule of a Meltano schedule: its cron expression, or @once/None."""
    if schedule["interval"] in NON_CRON_INTERVALS:
        return NON_CRON_INTERVALS[schedule["interval"]]
    return schedule["cron_interval"]


def environment_option() -> str:
    """Return ``--environment=<name>`` from the Airflow Variable, or nothing.

    A template macro, so the Variable is read when the task runs, never while parsing.
    """
    environment = Variable.get("MELTANO_ENVIRONMENT", default="")
    return shlex.quote(f"--environment={environment}") if environment else ""


def build_dag(schedule: dict[str, Any], root: Path, meltano: str) -> DAG:
    """Build the DAG of one Meltano schedule: one BashOperator running ``meltano run``."""
    arguments = run_arguments(schedule)
    command = (f"{shlex.quote(meltano)} {{{{ meltano_environment_option() }}}} run "
               f"{shlex.join(arguments)}")
    with DAG(
        dag_id=schedule["name"],
        schedule=airflow_schedule(schedule),
        start_date=START_DATE,
        catchup=False,
        max_active_runs=1,
        tags=["meltano"],
        doc_md=f"Meltano schedule `{schedule['name']}` (`{schedule['interval']}`): "
               f"`meltano run {shlex.join(arguments)}` in `{root}`.",
        user_defined_macros={"meltano_environment_option": environment_option},
    ) as dag:
        BashOperator(
            task_id="-".join(arguments),
            bash_command=command,
            cwd=str(root),
            env=schedule.get("env") or None,  # the schedule's own env, on top of the worker's
            append_env=True,
            skip_on_exit_code=None,  # any non-zero exit of meltano is a failure, 99 included
        )
    return dag


def build_dags() -> dict[str, DAG]:
    """Build every schedule's DAG, by DAG id."""
    root, meltano = project_root(), meltano_bin()
    schedules = cached_schedules(root, meltano)
    return {schedule["name"]: build_dag(schedule, root, meltano)
            for schedule in [*schedules.get("job", []), *schedules.get("elt", [])]}


globals().update(build_dags())
