"""Run every benchmark (``make bench``): the tap's, then the target's; print the figures.

Each benchmark measures its own baseline in the same run and prints its figures as
ratios against it (see bench_tap.py and bench_target.py). The machine's description and
every figure are also written as JSON to ``benchmarks/results/latest.json`` (not
committed), from which ``docs/benchmarks.md`` is updated by hand.

    .venv/bin/python benchmarks/run.py              # everything, ~5 minutes on 2 cores
    .venv/bin/python benchmarks/run.py --quick      # smaller sizes, ~1 minute
    .venv/bin/python benchmarks/run.py --only tap   # or --only target
"""

from __future__ import annotations

import argparse
import time
from datetime import datetime, timezone
from pathlib import Path

import bench_index
import bench_tap
import bench_target
from common import machine, write_json

RESULTS = Path(__file__).resolve().parent / "results" / "latest.json"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", choices=("tap", "target"))
    parser.add_argument("--quick", action="store_true",
                        help="10,000/20,000 customers for the tap, 500 for the target")
    parser.add_argument("--repeat", type=int, default=3, help="tap runs per size")
    args = parser.parse_args(argv)
    started = time.monotonic()
    about = machine()
    print(f"Machine: {about['cores']} cores, {about['cpu']}, Python {about['python']}, "
          f"SQLite {about['sqlite']}, singer-sdk {about['singer_sdk']}, orjson "
          f"{about['orjson']}; load average {about['load_average']}")
    results: dict = {"when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                     "machine": about}
    if args.only in (None, "tap"):
        sizes = "10000,20000" if args.quick else "10000,100000"
        results["tap"] = bench_tap.main(["--sizes", sizes, "--repeat", str(args.repeat)])
    if args.only in (None, "target"):
        count = "500" if args.quick else "2000"
        results["target"] = bench_target.main(["--count", count])
        results["index"] = bench_index.main(["--customers", "5000" if args.quick else "20000"])
    results["seconds"] = round(time.monotonic() - started, 1)
    write_json(RESULTS, results)
    print(f"\nAll benchmarks: {results['seconds']:.0f} s; figures in {RESULTS}")


if __name__ == "__main__":
    main()
