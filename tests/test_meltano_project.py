"""The Meltano project itself: meltano.yml is valid, settings and secrets resolve as documented.

These run the real ``meltano`` CLI on a temp copy of the project but install nothing
(``meltano config`` reads meltano.yml, the environment and ``.env``).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from importlib import resources
from pathlib import Path

import jsonschema
import pytest
import yaml

pytestmark = pytest.mark.meltano

REPO = Path(__file__).resolve().parents[1]
MELTANO = Path(sys.executable).parent / "meltano"
PLUGINS = {"tap-piriod": "extractors", "target-piriod": "loaders"}


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A copy of meltano.yml in a temp dir: .env and state written there stay there."""
    if not MELTANO.exists():
        pytest.fail(f"meltano is not installed next to {sys.executable}: "
                    "pip install -e '.[test,meltano]' (see the Makefile)")
    (tmp_path / "meltano.yml").write_text((REPO / "meltano.yml").read_text())
    return tmp_path


def run_meltano(project: Path, *args: str,
                env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run meltano in the project with a clean environment; fail if it fails."""
    clean = {key: value for key, value in os.environ.items()
             if not key.startswith(("MELTANO_", "TAP_", "TARGET_"))}
    done = subprocess.run([str(MELTANO), *args], cwd=project, capture_output=True, text=True,
                          env={**clean, "MELTANO_SEND_ANONYMOUS_USAGE_STATS": "false",
                               "NO_COLOR": "1", **(env or {})}, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def meltano(project: Path, *args: str, env: dict[str, str] | None = None) -> str:
    """Run meltano in the project with a clean environment; return its stdout."""
    return run_meltano(project, *args, env=env).stdout


def test_meltano_yml_is_valid_for_meltano() -> None:
    """meltano.yml passes the JSON schema that ships with Meltano."""
    schema_file = resources.files("meltano") / "schemas" / "meltano.schema.json"
    schema = json.loads(schema_file.read_text())
    jsonschema.validate(yaml.safe_load((REPO / "meltano.yml").read_text()), schema)


def test_every_plugin_installs_from_pypi_alone() -> None:
    """No plugin needs Meltano Hub: each has a namespace, a pip_url and an executable."""
    plugins = yaml.safe_load((REPO / "meltano.yml").read_text())["plugins"]
    names = set()
    for kind in ("extractors", "loaders", "utilities"):
        for plugin in plugins[kind]:
            assert "variant" not in plugin
            if "inherit_from" in plugin:  # the reconcile variant: installs as its parent
                assert plugin["inherit_from"] in names, plugin["name"]
            else:
                assert {"namespace", "pip_url", "executable"} <= plugin.keys(), plugin["name"]
            names.add(plugin["name"])
    assert {"tap-piriod", "tap-postgres", "tap-spreadsheets", "target-piriod", "target-duckdb",
            "target-postgres", "target-jsonl", "duckdb-sql"} <= names


@pytest.mark.parametrize("name", sorted(PLUGINS))
def test_config_list_shows_every_setting_and_takes_the_secret_from_the_environment(
        project: Path, name: str) -> None:
    prefix = name.upper().replace("-", "_")
    listing = meltano(project, "config", "list", "--all", name,
                      env={f"{prefix}_AUTH_TOKEN": "secret-from-env"})
    plugin = next(p for p in yaml.safe_load((REPO / "meltano.yml").read_text())
                  ["plugins"][PLUGINS[name]] if p["name"] == name)
    for setting in plugin["settings"]:
        assert f"{setting['name']} [env: {prefix}_{setting['name'].upper()}]" in listing
    auth_line = next(line for line in listing.splitlines() if line.startswith("auth_token"))
    assert "(redacted)" in auth_line and f"{prefix}_AUTH_TOKEN variable" in auth_line
    assert "secret-from-env" not in listing


def test_secrets_come_from_dotenv_and_environments_pick_the_api(project: Path) -> None:
    (project / ".env").write_text("TAP_PIRIOD_AUTH_TOKEN=tap-token-from-dotenv\n"
                                  "TARGET_PIRIOD_AUTH_TOKEN=target-token-from-dotenv\n")
    prod_tap = json.loads(meltano(project, "--environment=prod", "config", "--unsafe", "print",
                                  "tap-piriod"))
    assert prod_tap["auth_token"] == "tap-token-from-dotenv"
    assert prod_tap["api_url"] == "https://api.piriod.com"
    prod_target = json.loads(meltano(project, "--environment=prod", "config", "--unsafe",
                                     "print", "target-piriod"))
    assert prod_target["auth_token"] == "target-token-from-dotenv"
    # Redacted unless asked for.
    safe = json.loads(meltano(project, "--environment=prod", "config", "print", "tap-piriod"))
    assert safe["auth_token"] != "tap-token-from-dotenv"

    # dev is the local sandbox of `make demo` / `make sandbox`, with its published token;
    # a real variable still wins over meltano.yml.
    (project / ".env").unlink()
    dev = json.loads(meltano(project, "--environment=dev", "config", "--unsafe", "print",
                             "target-piriod"))
    assert dev["api_url"] == "http://127.0.0.1:8765"
    assert dev["auth_token"] == "sandbox-token"
    override = json.loads(meltano(project, "--environment=dev", "config", "--unsafe", "print",
                                  "tap-piriod", env={"TAP_PIRIOD_API_URL": "http://x:1"}))
    assert override["api_url"] == "http://x:1"


@pytest.mark.parametrize("name", sorted(PLUGINS))
def test_hub_definition_can_be_added_to_a_new_project(tmp_path: Path, name: str) -> None:
    """``meltano add --from-ref`` accepts the hub file, as Meltano Hub would serve it."""
    (tmp_path / "meltano.yml").write_text("default_environment: dev\n"
                                          "environments:\n- name: dev\n")
    hub_file = REPO / "plugins" / PLUGINS[name] / f"{name}--piriod.yml"
    meltano(tmp_path, "add", "--no-install", "--plugin-type", PLUGINS[name][:-1],
            "--from-ref", str(hub_file), name)
    added = yaml.safe_load((tmp_path / "meltano.yml").read_text())["plugins"][PLUGINS[name]]
    assert added[0]["name"] == name
    assert added[0]["pip_url"] == "piriod-singer"
    listing = meltano(tmp_path, "config", "list", "--all", name)
    assert "auth_token [env:" in listing and "api_url [env:" in listing


def test_jobs_and_schedules_are_listed(project: Path) -> None:
    schedules = meltano(project, "--environment=prod", "schedule", "list")
    assert "job warehouse-replication-hourly: warehouse-replication → " \
           "['tap-piriod--batch target-postgres dbt-postgres:run dbt-postgres:test']" \
        in schedules
    assert "reconcile-weekly: reconcile → ['tap-piriod--reconcile target-postgres " \
           "dbt-postgres:run dbt-postgres:test']" in schedules
    assert "reverse-etl-every-15-minutes: reverse-etl → ['tap-postgres target-piriod']" \
        in schedules
    assert "reverse-etl-csv-hourly: reverse-etl-csv → ['tap-spreadsheets target-piriod']" \
        in schedules
    assert "reconcile-duckdb-weekly: reconcile-duckdb → ['duckdb-sql:empty-full-read " \
           "tap-piriod--reconcile target-duckdb--full-read duckdb-sql:retire-deleted " \
           "dbt-duckdb:run dbt-duckdb:test']" in schedules


@pytest.mark.parametrize("environment", ["dev", "prod"])
def test_only_the_postgresql_job_extractor_writes_batch_files(
        project: Path, environment: str) -> None:
    """BATCH is tap-piriod--batch's alone: tap-piriod (every other loader) and the reconcile
    (ACTIVATE_VERSION needs RECORD messages) send RECORD messages in every environment."""

    def batch_config(plugin: str) -> dict | None:
        printed = meltano(project, f"--environment={environment}", "config", "print", plugin)
        return json.loads(printed).get("batch_config")

    assert batch_config("tap-piriod--batch") == {
        "encoding": {"format": "jsonl", "compression": "gzip"},
        "storage": {"root": f"file://{project}/output/batches"}, "batch_size": 10000}
    assert not batch_config("tap-piriod")
    assert not batch_config("tap-piriod--reconcile")
    # Meltano 4.4.1: an inheriting plugin that declared `settings:` would crash this.
    listing = meltano(project, f"--environment={environment}", "config", "list",
                      "tap-piriod--batch")
    assert "batch_config.encoding.format" in listing


def test_dev_is_the_default_for_every_command_with_the_env_file(project: Path) -> None:
    """`default_environment: dev` alone does not reach `meltano config` (Meltano's design);
    MELTANO_ENVIRONMENT=dev in .env, as .env.example and the README have it, does."""
    ignored = run_meltano(project, "config", "list", "tap-piriod")
    assert "The default environment 'dev' will be ignored" in ignored.stderr, \
        "Meltano honours default_environment for `config` now: README and .env.example " \
        "can drop the MELTANO_ENVIRONMENT line"
    assert "http://127.0.0.1:8765" not in ignored.stdout

    shutil.copy(REPO / ".env.example", project / ".env")
    listed = run_meltano(project, "config", "list", "tap-piriod")
    assert "will be ignored" not in listed.stdout + listed.stderr
    assert "Environment 'dev' is active" in listed.stderr
    assert "api_url [env: TAP_PIRIOD_API_URL] (default: 'https://api.piriod.com') current " \
           "value: 'http://127.0.0.1:8765' (from the active environment" in listed.stdout
    for plugin in ("tap-piriod", "target-piriod"):
        config = json.loads(meltano(project, "config", "--unsafe", "print", plugin))
        assert (config["api_url"], config["auth_token"]) == (
            "http://127.0.0.1:8765", "sandbox-token")
    # The command line still wins over .env.
    prod = json.loads(meltano(project, "--environment=prod", "config", "print", "tap-piriod"))
    assert prod["api_url"] == "https://api.piriod.com"
    csv = json.loads(meltano(project, "--environment=prod", "config", "print",
                             "tap-spreadsheets"))
    assert csv["files"][0]["path"] == f"{project}/input/customers.csv"
