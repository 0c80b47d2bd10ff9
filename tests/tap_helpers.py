"""Run ``tap-piriod`` as a real process against a sandbox and read its Singer output."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from piriod_sandbox import SandboxProcess

TAP = [sys.executable, "-m", "tap_piriod"]


@dataclass
class TapRun:
    """What one tap process printed."""

    returncode: int
    stderr: str
    messages: list[dict] = field(default_factory=list)

    @property
    def records(self) -> list[dict]:
        return [m["record"] for m in self.messages if m["type"] == "RECORD"]

    @property
    def ids(self) -> list[str]:
        return [record["id"] for record in self.records]

    @property
    def schema(self) -> dict:
        return next(m["schema"] for m in self.messages if m["type"] == "SCHEMA")

    @property
    def states(self) -> list[dict]:
        return [m["value"] for m in self.messages if m["type"] == "STATE"]

    @property
    def bookmark(self) -> str:
        return self.states[-1]["bookmarks"]["customers"]["replication_key_value"]


# The tap's max_workers in these tests; the `tap_workers` fixture (conftest.py) runs the
# correctness tests once with 1 (one page at a time) and once with 8 (pages read ahead).
WORKERS = {"max_workers": 4}


def tap_config(sandbox: SandboxProcess, **overrides: object) -> dict:
    return {"auth_token": sandbox.token, "api_url": sandbox.url, "max_retries": 3, **WORKERS,
            **overrides}


def write_json(tmp_path: Path, name: str, value: object) -> str:
    path = tmp_path / name
    path.write_text(json.dumps(value))
    return str(path)


def run_tap(sandbox: SandboxProcess, tmp_path: Path, state: dict | None = None,
            catalog: dict | None = None, timeout: float = 180, **config: object) -> TapRun:
    """Run the tap to completion and parse every message it wrote."""
    command = [*TAP, "--config", write_json(tmp_path, "config.json", tap_config(sandbox, **config))]
    if state is not None:
        command += ["--state", write_json(tmp_path, "state.json", state)]
    if catalog is not None:
        command += ["--catalog", write_json(tmp_path, "catalog.json", catalog)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    messages = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
    return TapRun(done.returncode, done.stderr, messages)


def instant(text: str) -> datetime:
    """Parse an ISO 8601 timestamp into an aware datetime (for comparing instants)."""
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)
