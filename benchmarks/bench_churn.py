"""What a moving listing costs the tap: requests and time, quiet against churned reads.

One sandbox of ``--size`` customers; the tap (``max_workers`` 8, pages of 100) reads it
in FULL_TABLE-like full reads (no state), ``--repeat`` times per case:

* ``quiet``: nothing moves (the reference: pages + the closing count);
* ``once``: exactly before the 5th list request, 5 deletes and 3 late inserts among the
  first 1,000 customers in creation order (the sandbox's churn control): one re-read;
* ``always``: the same before every 10th list request: no read holds still, 3 reads.

(A churn of as many inserts as deletes at one instant changes no count: see "What is
left" in docs/architecture.md.)

    python benchmarks/bench_churn.py [--size 10000] [--repeat 3]

Figures are the fastest run of each case; requests are the sandbox's count.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from common import Run, SandboxProcess, best, run_measured, table

CASES = {
    "quiet": {},
    "once": {"at": 5, "deletes": 5, "inserts": 3, "within": 1000, "rng_seed": 1},
    "always": {"at": 5, "every": 10, "deletes": 5, "inserts": 3, "within": 1000,
               "rng_seed": 1},
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="bench-churn-"))
    rows, quiet = [], None
    with SandboxProcess(args.size) as sandbox:
        config = work / "tap-config.json"
        config.write_text(json.dumps({"auth_token": sandbox.token, "api_url": sandbox.url,
                                      "page_size": 100, "max_workers": 8}))
        for case, plan in CASES.items():
            runs: list[Run] = []
            for _ in range(args.repeat):
                sandbox.reset(args.size)
                sandbox.set_churn(**plan)
                runs.append(run_measured(case, [sys.executable, "-m", "tap_piriod",
                                                "--config", str(config)], sandbox=sandbox,
                                         stderr_path=work / f"{case}.err"))
            fastest = best(runs)
            quiet = quiet or fastest
            reads = _reads(work / f"{case}.err")
            rows.append([case, fastest.requests, f"{fastest.requests / quiet.requests:.2f}x",
                         f"{fastest.wall:.2f}", f"{fastest.wall / quiet.wall:.2f}x", reads])
    print(table(["case", "requests", "vs quiet", "wall s", "vs quiet", "reads"], rows))


def _reads(stderr: Path) -> str:
    text = stderr.read_text(errors="replace")
    if "kept moving" in text:
        return "3, never held still"
    if "read 2 times" in text:
        return "2"
    return "1" if "read 3 times" not in text else "3"


if __name__ == "__main__":
    main()
