"""State benchmark: what the tap's state costs after a tie storm, and what a re-run emits.

A bulk update puts N customers on one ``updated`` instant (the bookmark's). The tap's
state then remembers each of them as an 8-byte digest, so that the next run, which
re-reads the lookback window, emits none of them again. This measures that state's size
and the runs before and after, at N = 100,000 by default (above DIGEST_CAP the state
keeps the newest DIGEST_CAP and the rest are emitted once more).

    python benchmarks/bench_state.py [--count 100000]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from datetime import datetime, timedelta, timezone
from pathlib import Path

from common import SandboxProcess, run_measured, table, tool


def run_tap(sandbox: SandboxProcess, work: Path, name: str, state: dict | None) -> dict:
    config = work / "config.json"
    config.write_text(json.dumps({"auth_token": sandbox.token, "api_url": sandbox.url}))
    command = [tool("tap-piriod"), "--config", str(config)]
    if state is not None:
        (work / "state.json").write_text(json.dumps(state))
        command += ["--state", str(work / "state.json")]
    out = work / f"{name}.jsonl"
    run = run_measured(name, command, sandbox=sandbox, stdout_path=out,
                       stderr_path=work / f"{name}.err")
    emitted, last_state = 0, {}
    with out.open(encoding="utf-8") as lines:
        for line in lines:
            if line.startswith('{"type":"RECORD"'):
                emitted += 1
            elif line.startswith('{"type":"STATE"'):
                last_state = json.loads(line)["value"]
    return {"name": name, "emitted": emitted, "state": last_state,
            "state_bytes": len(json.dumps(last_state)), "wall": run.wall,
            "requests": run.requests}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=100_000)
    args = parser.parse_args(argv)
    tie = (datetime.now(timezone.utc) - timedelta(minutes=1)).isoformat()
    runs = []
    with tempfile.TemporaryDirectory(prefix="bench-state-") as tmp, SandboxProcess(0) as sandbox:
        work = Path(tmp)
        sandbox.tie_storm(args.count, updated=tie)
        runs.append(run_tap(sandbox, work, "first run", None))
        runs.append(run_tap(sandbox, work, "nothing changed", runs[-1]["state"]))
        sandbox.touch(count=1, rng_seed=5)
        runs.append(run_tap(sandbox, work, "one edited", runs[-1]["state"]))
        previous = {"bookmarks": {"customers": {
            key: value for key, value in runs[0]["state"]["bookmarks"]["customers"].items()
            if key != "delivered"}}}
        runs.append(run_tap(sandbox, work, "plain bookmark (old state)", previous))
    rows = [[run["name"], f"{run['emitted']:,}", f"{run['state_bytes']:,}", run["requests"],
             f"{run['wall']:.2f}"] for run in runs]
    text = (f"Tie storm of {args.count:,} customers on one instant\n\n"
            + table(["run", "records emitted", "state bytes", "requests", "wall s"], rows))
    print(text)
    return {"runs": [{k: v for k, v in run.items() if k != "state"} for run in runs],
            "report": text}


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
