"""A real, non-editable install (``pip install .``) carries the schema and runs the tap."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A fresh virtualenv with the project installed from a built wheel."""
    root = tmp_path_factory.mktemp("wheel-install")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w",
                    str(root / "dist"), str(REPO)], check=True)
    wheel = next((root / "dist").glob("piriod_singer-*.whl"))
    subprocess.run([sys.executable, "-m", "venv", str(root / "venv")], check=True)
    subprocess.run([str(root / "venv/bin/pip"), "install", "--quiet", str(wheel)], check=True)
    return root


def test_wheel_carries_the_schema_and_discovers(installed, sandbox):
    config = installed / "config.json"
    config.write_text(json.dumps({"auth_token": sandbox.token, "api_url": sandbox.url}))
    discover = subprocess.run([str(installed / "venv/bin/tap-piriod"), "--config", str(config),
                               "--discover"], capture_output=True, text=True, check=True,
                              cwd=installed)
    schema = json.loads(discover.stdout)["streams"][0]["schema"]
    ours = json.loads((REPO / "schemas/customers.json").read_text())
    assert set(schema["properties"]) == set(ours["properties"])

    sync = subprocess.run([str(installed / "venv/bin/tap-piriod"), "--config", str(config)],
                          capture_output=True, text=True, check=True, cwd=installed)
    records = [line for line in sync.stdout.splitlines() if '"type":"RECORD"' in line]
    assert len(records) == 250


def test_installed_package_reads_the_packaged_copy(installed):
    probe = "from piriod.schema import customers_schema_path as p; print(p())"
    where = subprocess.run([str(installed / "venv/bin/python"), "-c", probe],
                           capture_output=True, text=True, check=True, cwd=installed).stdout
    assert "site-packages/piriod/schemas/customers.json" in where
