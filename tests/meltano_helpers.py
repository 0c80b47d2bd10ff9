"""What the Meltano end-to-end tests share: the installed project, the runner, the env.

``installed_project()`` copies the repo's ``meltano.yml`` and its dbt project
(``transform/``) into a temp dir (the repo's ``.meltano/`` is left alone), points
``tap-piriod``/``target-piriod`` at this checkout and runs ``meltano install`` once per test
session: every module that calls it gets the same project, so plugins (the dbt utilities
too) are installed once (state ids keep the modules apart: each test runs
with its own ``--state-id-suffix``).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from postgres_server import PostgresNotAvailable, PostgresServer

from piriod_sandbox import SandboxProcess

REPO = Path(__file__).resolve().parents[1]
MELTANO = Path(sys.executable).parent / "meltano"
PG_PASSWORD = "unused"  # the test server trusts 127.0.0.1, but tap-postgres wants one


class Meltano:
    """Runs ``meltano --environment=dev ...`` in the test project with an isolated env."""

    def __init__(self, root: Path) -> None:
        self.root = root
        # Nothing of the developer's own Meltano or plugin settings leaks into the tests.
        self.base_env = {key: value for key, value in os.environ.items()
                         if not key.startswith(("MELTANO_", "TAP_", "TARGET_"))}
        self.base_env.update(MELTANO_SEND_ANONYMOUS_USAGE_STATS="false",
                             MELTANO_CLI_LOG_LEVEL="info", NO_COLOR="1")

    def __call__(self, *args: str, env: dict[str, str] | None = None, check: bool = True,
                 timeout: float = 900) -> subprocess.CompletedProcess:
        done = subprocess.run([str(MELTANO), "--environment=dev", *args], cwd=self.root,
                              env={**self.base_env, **(env or {})}, capture_output=True,
                              text=True, timeout=timeout)
        if check and done.returncode != 0:
            pytest.fail(f"meltano {' '.join(args)} exited {done.returncode}:\n"
                        f"{(done.stdout + done.stderr)[-6000:]}")
        return done

    def state(self, state_id: str) -> dict:
        """Return the state Meltano keeps for a state id."""
        return json.loads(self("state", "get", state_id).stdout)

    def bookmark(self, state_id: str) -> str:
        """Return the ``customers`` bookmark Meltano keeps for a state id."""
        state = self.state(state_id)
        return state["singer_state"]["bookmarks"]["customers"]["replication_key_value"]


_INSTALLED: dict[str, Meltano] = {}


def installed_project(tmp_path_factory: pytest.TempPathFactory) -> Meltano:
    """Return the project copy with every plugin installed (installed once per session)."""
    if "project" in _INSTALLED:
        return _INSTALLED["project"]
    if not MELTANO.exists():
        pytest.fail(f"meltano is not installed next to {sys.executable}: "
                    "pip install -e '.[test,meltano]' (see the Makefile)")
    root = tmp_path_factory.mktemp("meltano-project")
    text = (REPO / "meltano.yml").read_text()
    assert text.count("pip_url: -e .\n") == 2, "tap-piriod and target-piriod install the repo"
    (root / "meltano.yml").write_text(text.replace("pip_url: -e .\n", f"pip_url: -e {REPO}\n"))
    (root / "output").mkdir()
    shutil.copytree(REPO / "transform", root / "transform",  # the dbt project of the jobs
                    ignore=shutil.ignore_patterns("target", "logs"))
    project = Meltano(root)
    started = time.monotonic()
    project("install", timeout=1800)
    print(f"meltano install: {time.monotonic() - started:.1f} s")  # shown with pytest -s
    _INSTALLED["project"] = project
    return project


def piriod_env(sandbox: SandboxProcess) -> dict[str, str]:
    """Point tap-piriod and target-piriod at the test's sandbox (it has a random port).

    Plugins that inherit from tap-piriod (``tap-piriod--reconcile``) read these too.
    """
    return {"TAP_PIRIOD_API_URL": sandbox.url, "TAP_PIRIOD_AUTH_TOKEN": sandbox.token,
            "TARGET_PIRIOD_API_URL": sandbox.url, "TARGET_PIRIOD_AUTH_TOKEN": sandbox.token}


def postgres_env(server: PostgresServer, plugin: str, database: str) -> dict[str, str]:
    """Point tap-postgres or target-postgres at the test server."""
    prefix = plugin.upper().replace("-", "_")
    return {f"{prefix}_HOST": server.host, f"{prefix}_PORT": str(server.port),
            f"{prefix}_USER": server.user, f"{prefix}_PASSWORD": PG_PASSWORD,
            f"{prefix}_DATABASE": database}


def start_postgres() -> PostgresServer:
    """Start a private PostgreSQL server (fails the test, never skips, if it can't start)."""
    try:
        return PostgresServer().start()
    except PostgresNotAvailable as error:
        pytest.fail(str(error))
