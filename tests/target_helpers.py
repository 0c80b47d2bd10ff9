"""Run ``target-piriod`` as a real process against a sandbox, feeding Singer messages."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from piriod.schema import load_customers_schema
from piriod_sandbox import SandboxProcess

TARGET = [sys.executable, "-m", "target_piriod"]
SUMMARY = re.compile(r"target-piriod summary: (.*)")


def schema_message(stream: str = "customers", key_properties: list[str] | None = None) -> dict:
    return {"type": "SCHEMA", "stream": stream, "schema": load_customers_schema(),
            "key_properties": ["id"] if key_properties is None else key_properties}


def record_message(record: dict, stream: str = "customers") -> dict:
    return {"type": "RECORD", "stream": stream, "record": record}


def state_message(value: dict) -> dict:
    return {"type": "STATE", "value": value}


def messages_for(records: list[dict], stream: str = "customers") -> list[dict]:
    """A SCHEMA, the records, and a final STATE."""
    return [schema_message(stream), *(record_message(r, stream) for r in records),
            state_message({"loaded": len(records)})]


def numbered_load(count: int) -> list[dict]:
    """SCHEMA, ``count`` new customers, a STATE after every 10 (its position)."""
    messages = [schema_message()]
    for n in range(1, count + 1):
        messages.append(record_message(new_customer(n)))
        if n % 10 == 0:
            messages.append(state_message({"position": n}))
    return messages


def new_customer(n: int, **overrides: object) -> dict:
    """A customer that the seeded sandbox does not have, keyed by tax id, email and erp id."""
    return {"name": f"Reverse {n} SpA", "tax_id": f"77.{n:03d}.000-K",
            "email": f"reverse{n}@example.com", "country": "CL", "state": "CL-RM",
            "currency": "CLP", "metadata": {"erp_id": f"NEW-{n:05d}"}, **overrides}


def target_config(sandbox: SandboxProcess, tmp_path: Path, **overrides: object) -> dict:
    return {"auth_token": sandbox.token, "api_url": sandbox.url, "max_retries": 4,
            "request_timeout": 5, "dead_letter_path": str(tmp_path / "rejects.jsonl"),
            **overrides}


@dataclass
class TargetRun:
    """What one target process did."""

    returncode: int
    stdout: str
    stderr: str
    dead_letter_path: Path
    states: list[dict] = field(default_factory=list)

    @property
    def summary(self) -> dict[str, str]:
        match = SUMMARY.findall(self.stderr)
        assert match, f"no summary line in stderr:\n{self.stderr[-3000:]}"
        return dict(part.split("=", 1) for part in match[-1].split() if "=" in part)

    def count(self, name: str) -> int:
        return int(self.summary[name])

    @property
    def rejects(self) -> list[dict]:
        if not self.dead_letter_path.exists():
            return []
        return [json.loads(line) for line in self.dead_letter_path.read_text().splitlines()]


def write_input(tmp_path: Path, messages: list[dict], name: str = "input.jsonl") -> Path:
    path = tmp_path / name
    path.write_text("".join(json.dumps(m) + "\n" for m in messages))
    return path


def write_config(tmp_path: Path, config: dict, name: str = "target-config.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(config))
    return path


def run_target(sandbox: SandboxProcess, tmp_path: Path, messages: list[dict],
               timeout: float = 120, **config: object) -> TargetRun:
    """Run the target to completion on ``messages`` (via stdin)."""
    full = target_config(sandbox, tmp_path, **config)
    command = [*TARGET, "--config", str(write_config(tmp_path, full))]
    stdin = "".join(json.dumps(m) + "\n" for m in messages)
    done = subprocess.run(command, input=stdin, capture_output=True, text=True,
                          timeout=timeout, check=False)
    states = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
    return TargetRun(done.returncode, done.stdout, done.stderr,
                     Path(full["dead_letter_path"]), states)


def counts_by(customers: list[dict], field_name: str) -> Counter:
    """How many customers hold each value of an attribute (``metadata.x`` allowed)."""
    if field_name.startswith("metadata."):
        key = field_name.split(".", 1)[1]
        return Counter((c.get("metadata") or {}).get(key) for c in customers)
    return Counter(c.get(field_name) for c in customers)


def assert_exactly_once(sandbox: SandboxProcess, field_name: str, values: list[str]) -> None:
    """Every value is held by exactly one customer: nothing lost, nothing duplicated."""
    counts = counts_by(sandbox.customers(), field_name)
    wrong = {value: counts[value] for value in values if counts[value] != 1}
    assert not wrong, f"{field_name} values not present exactly once: {wrong}"


def by_field(sandbox: SandboxProcess, field_name: str) -> dict[str, dict]:
    """Customers indexed by an attribute (``metadata.x`` allowed)."""
    result = {}
    for customer in sandbox.customers():
        if field_name.startswith("metadata."):
            value = (customer.get("metadata") or {}).get(field_name.split(".", 1)[1])
        else:
            value = customer.get(field_name)
        result[value] = customer
    return result


def run_target_lines(sandbox: SandboxProcess, tmp_path: Path, lines: list[str | bytes],
                     timeout: float = 120, env: dict[str, str] | None = None,
                     input_file: bool = False, **config: object) -> TargetRun:
    """Run the target on raw input lines (bytes kept as they are: not JSON, not UTF-8...).

    On standard input, or with ``input_file`` from a file named by ``--input``.
    """
    full = target_config(sandbox, tmp_path, **config)
    command = [*TARGET, "--config", str(write_config(tmp_path, full))]
    data = b"".join((line if isinstance(line, bytes) else line.encode("utf-8")) + b"\n"
                    for line in lines)
    if input_file:
        (tmp_path / "input.singer").write_bytes(data)
        command += ["--input", str(tmp_path / "input.singer")]
        data = b""
    done = subprocess.run(command, input=data, capture_output=True, timeout=timeout,
                          check=False, env=env)
    stdout = done.stdout.decode("utf-8", errors="replace")
    states = [json.loads(line) for line in stdout.splitlines() if line.strip()]
    return TargetRun(done.returncode, stdout, done.stderr.decode("utf-8", errors="replace"),
                     Path(full["dead_letter_path"]), states)
