"""`make demo` tells the whole story, can be told twice in a row, and touches only its own files.

The demo runs on a copy of the project in a temp dir (so that the repo's output/ and
.meltano/ are left alone) and on a free port instead of the dev environment's 8765. The
copy holds a warehouse and a rejects file of "the user's own", which the demo must leave
as they were, and the command the demo ends with is run as printed.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.meltano

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_demo_runs_the_whole_loop_twice(tmp_path: Path) -> None:
    if not (Path(sys.executable).parent / "meltano").exists():
        pytest.fail("meltano is not installed in this venv: pip install -e '.[test,meltano]'")
    (tmp_path / "scripts").mkdir()
    shutil.copy(REPO / "scripts" / "demo.py", tmp_path / "scripts" / "demo.py")
    shutil.copytree(REPO / "transform", tmp_path / "transform",
                    ignore=shutil.ignore_patterns("target", "logs"))
    text = (REPO / "meltano.yml").read_text().replace("pip_url: -e .\n",
                                                      f"pip_url: -e {REPO}\n")
    (tmp_path / "meltano.yml").write_text(text)
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("MELTANO_", "TAP_", "TARGET_"))}
    env["PIRIOD_DEMO_PORT"] = str(free_port())

    output_dir = tmp_path / "output"
    output_dir.mkdir()
    users_own = {output_dir / "warehouse.duckdb": b"the user's own warehouse",
                 output_dir / "target-piriod-rejects.jsonl": b'{"the user": "own rejects"}\n'}
    for path, content in users_own.items():
        path.write_bytes(content)
    (tmp_path / ".venv").symlink_to(Path(sys.executable).parents[1])  # as in a clone

    for _ in range(2):  # the second run starts from the same clean slate
        done = subprocess.run([sys.executable, "scripts/demo.py"], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=1200)
        output = done.stdout + done.stderr
        assert done.returncode == 0, output
        assert "500 customers landed in output/demo/warehouse.duckdb" in output
        moved = re.search(r"(\d+) rows moved: the 5 edited, the 2 new", output)
        assert moved and 7 <= int(moved.group(1)) <= 10, output  # + ties at the bookmark
        assert "502 rows in the table, no duplicates" in output
        assert ("target-piriod summary: records=5 created=2 updated=2 unchanged=1 skipped=0 "
                "rejected=0") in output
        assert "(renamed in CRM)'" in output
        assert "==> 7. Stop the sandbox" in output
        # The models, built and tested by dbt on the demo's DuckDB file: 502 customers.
        assert "dbt test: PASS=16 WARN=0 ERROR=0" in output, output
        assert re.search(r"customer_id +name +country_code +state_name +balance +contact_count"
                         r"\n.*\n +\w+ .+ [A-Z]{2} ", output), output
        assert "==> 6. Model the copy" in output.split("==> 7. Stop the sandbox")[0]
    for path, content in users_own.items():
        assert path.read_bytes() == content, f"the demo changed {path.name}"

    # The demo ends with the command that queries its warehouse: it runs as printed.
    lines = output.splitlines()
    command = lines[lines.index("Query the demo's warehouse:") + 1].strip()
    assert command.startswith(".venv/bin/python -c ")
    queried = subprocess.run(command, shell=True, cwd=tmp_path, env=env, capture_output=True,
                             text=True, timeout=120)
    assert queried.returncode == 0, queried.stderr
    assert "Cliente Demo 2 SpA" in queried.stdout and "99.000.001-1" in queried.stdout
    # The sandbox is gone: its port is free again.
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", int(env["PIRIOD_DEMO_PORT"]))) != 0
