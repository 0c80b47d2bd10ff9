"""Tap benchmark: tap-piriod against the irreducible work, at 10,000 and 100,000 customers.

For each size, one sandbox is seeded and, ``--repeat`` times, in turn:

* the baseline (benchmarks/baseline_extract.py): the same GET requests over a pooled
  ``requests.Session``, each record written as one JSON line;
* ``tap-piriod --config cfg.json > out.jsonl``.

Figures are from the fastest of the repeats (the machine may be shared). Each run's
CPU seconds and peak RSS come from ``os.wait4``; the sandbox's CPU seconds from /proc.
The tap's records are checked to be the baseline's records, value for value.

Then the incremental case on the 100,000-customer sandbox: 1% of the customers are
touched (``updated`` = now) and the tap runs again from the full run's final STATE.

    python benchmarks/bench_tap.py [--sizes 10000,100000] [--repeat 3] [--tree DIR]
    python benchmarks/bench_tap.py --sizes 100000 --latency-ms 50 --workers 8

``--latency-ms`` makes the sandbox answer every request that much later, as a remote API
would: the baseline pays it once per page, one page after another; the tap reads
``--workers`` pages at a time (its ``max_workers`` setting).
"""

from __future__ import annotations

import argparse
import decimal
import json
import os
import sys
import tempfile
from datetime import datetime
from pathlib import Path

from common import ROOT, Run, SandboxProcess, best, run_measured, spread, table, tool

PAGE_SIZE = 100


def tap_command(config: Path, tree: str | None, state: Path | None = None) -> list[str]:
    command = [sys.executable, "-m", "tap_piriod"] if tree else [tool("tap-piriod")]
    command += ["--config", str(config)]
    return command + (["--state", str(state)] if state else [])


def baseline_command(sandbox: SandboxProcess) -> list[str]:
    return [sys.executable, str(ROOT / "benchmarks" / "baseline_extract.py"), sandbox.url,
            sandbox.token, str(PAGE_SIZE)]


def _instant(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text.replace("Z", "+00:00")) if text else None


def same_records(tap_output: Path, baseline_output: Path) -> tuple[bool, str]:
    """Check that the tap emitted exactly the baseline's records, with the same values.

    ``created``/``updated`` are compared as instants (the tap writes them in one UTC
    form, by design); every other value must be equal, amounts as Decimals.
    """
    def load(path: Path, singer: bool) -> dict[str, dict]:
        records = {}
        with path.open(encoding="utf-8") as lines:
            for line in lines:
                message = json.loads(line, parse_float=decimal.Decimal)
                if singer:
                    if message["type"] != "RECORD":
                        continue
                    message = message["record"]
                for name in ("created", "updated"):
                    message[name] = _instant(message.get(name))
                records[message["id"]] = message
        return records

    tap, base = load(tap_output, True), load(baseline_output, False)
    if tap.keys() != base.keys():
        return False, f"ids differ: {len(tap.keys() - base.keys())} extra, " \
                      f"{len(base.keys() - tap.keys())} missing"
    differing = [key for key in base if tap[key] != base[key]]
    if differing:
        return False, f"{len(differing)} records differ, e.g. {differing[0]}"
    return True, f"{len(tap)} records, same values"


def last_state(singer_output: Path) -> dict:
    state = {}
    with singer_output.open(encoding="utf-8") as lines:
        for line in lines:
            if line.startswith('{"type":"STATE"'):
                state = json.loads(line)["value"]
    return state


def bench_size(size: int, repeat: int, tree: str | None, work: Path,
               incremental: bool, latency_ms: int = 0, workers: int = 4) -> dict:
    print(f"\n== tap: {size:,} customers, page size {PAGE_SIZE}, {latency_ms} ms latency, "
          f"max_workers={workers} ==", flush=True)
    with SandboxProcess(size) as sandbox:
        if latency_ms:
            sandbox.set_faults(latency_ms=latency_ms)
        config = work / "tap-config.json"
        config.write_text(json.dumps({"auth_token": sandbox.token, "api_url": sandbox.url,
                                      "page_size": PAGE_SIZE, "max_workers": workers}))
        base_runs: list[Run] = []
        tap_runs: list[Run] = []
        for attempt in range(repeat):
            base_runs.append(run_measured(
                "baseline", baseline_command(sandbox), sandbox=sandbox,
                stdout_path=work / "baseline.jsonl", stderr_path=work / "baseline.err"))
            tap_runs.append(run_measured(
                "tap-piriod", tap_command(config, tree), sandbox=sandbox,
                stdout_path=work / f"tap-{attempt}.jsonl", stderr_path=work / "tap.err"))
            print(f"  run {attempt + 1}: baseline {base_runs[-1].wall:.2f} s, "
                  f"tap {tap_runs[-1].wall:.2f} s", flush=True)
        checked, detail = same_records(work / "tap-0.jsonl", work / "baseline.jsonl")
        print(f"  output check: {detail}", flush=True)
        result = {"size": size, "latency_ms": latency_ms, "workers": workers,
                  "baseline": best(base_runs).as_dict(),
                  "tap": best(tap_runs).as_dict(), "baseline_spread": spread(base_runs),
                  "tap_spread": spread(tap_runs), "same_records": checked,
                  "check": detail}
        if incremental:
            result["incremental"] = bench_incremental(sandbox, config, tree, work,
                                                      best(tap_runs), size)
    for name in ("baseline", "tap"):
        run = result[name]
        run["records_per_s"] = size / run["wall"]
    result["ratio_records_per_s"] = result["tap"]["records_per_s"] / \
        result["baseline"]["records_per_s"]
    return result


def bench_incremental(sandbox: SandboxProcess, config: Path, tree: str | None, work: Path,
                      full: Run, size: int) -> dict:
    state = work / "state.json"
    state.write_text(json.dumps(last_state(work / "tap-0.jsonl")))
    changed = max(1, size // 100)
    sandbox.touch(count=changed, rng_seed=11)
    run = run_measured("tap-piriod incremental", tap_command(config, tree, state),
                       sandbox=sandbox, stdout_path=work / "tap-incremental.jsonl",
                       stderr_path=work / "tap-incremental.err")
    with (work / "tap-incremental.jsonl").open(encoding="utf-8") as lines:
        emitted = sum(1 for line in lines if line.startswith('{"type":"RECORD"'))
    print(f"  incremental: {changed} changed, {emitted} emitted, {run.requests} requests "
          f"(full run: {full.requests}) in {run.wall:.2f} s", flush=True)
    return {**run.as_dict(), "changed": changed, "emitted": emitted,
            "full_requests": full.requests,
            "request_ratio": run.requests / full.requests if full.requests else None}


def report(results: list[dict]) -> str:
    rows = []
    for result in results:
        base, tap = result["baseline"], result["tap"]
        for name, run in (("baseline", base), ("tap-piriod", tap)):
            rows.append([
                f"{result['size']:,}", name, f"{run['records_per_s']:,.0f}",
                f"{run['records_per_s'] / base['records_per_s']:.2f}x",
                f"{run['wall']:.2f}", f"{run['cpu']:.2f}", f"{run['peak_rss_mb']:.0f}",
                f"{run['sandbox_cpu']:.2f} ({run['sandbox_share']:.0%})",
                run["requests"]])
    text = table(["customers", "run", "records/s", "vs baseline", "wall s", "CPU s",
                  "peak RSS MB", "sandbox CPU s (share of wall)", "requests"], rows)
    by_size = {result["size"]: result for result in results}
    if len(by_size) > 1:
        small, large = by_size[min(by_size)], by_size[max(by_size)]
        growth = large["tap"]["peak_rss_mb"] / small["tap"]["peak_rss_mb"]
        text += (f"\n\nTap peak RSS {small['tap']['peak_rss_mb']:.0f} MB at "
                 f"{small['size']:,} -> {large['tap']['peak_rss_mb']:.0f} MB at "
                 f"{large['size']:,} customers: {growth:.2f}x (goal <= 1.5x).")
    for result in results:
        goal = "6" if result.get("latency_ms") else "0.8"
        text += (f"\n\n{result['size']:,} ({result.get('latency_ms', 0)} ms latency, "
                 f"max_workers={result.get('workers')}): tap/baseline records/s = "
                 f"{result['ratio_records_per_s']:.2f} (goal >= {goal}); output check: "
                 f"{result['check']}; walls: baseline {result['baseline_spread']}, "
                 f"tap {result['tap_spread']}.")
        inc = result.get("incremental")
        if inc:
            text += (f"\n\nIncremental at {result['size']:,}: {inc['changed']} customers "
                     f"changed (1%), {inc['emitted']} emitted, {inc['requests']} requests "
                     f"vs {inc['full_requests']} for the full run = "
                     f"{inc['request_ratio']:.1%} (goal <= 2%), {inc['wall']:.2f} s.")
    return text


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--tree", help="benchmark the tap_piriod and piriod_sandbox of this "
                                       "directory instead (e.g. an older commit, for "
                                       "'before' figures)")
    parser.add_argument("--no-incremental", action="store_true")
    parser.add_argument("--latency-ms", type=int, default=0,
                        help="sandbox latency per request (a remote API's round trip)")
    parser.add_argument("--workers", type=int, default=4, help="the tap's max_workers")
    args = parser.parse_args(argv)
    if args.tree:
        # Children import the tree's packages; ``python -m`` puts the working directory
        # first on sys.path, so no child may start in the checkout (the sandbox starts
        # in ours).
        os.environ["PYTHONPATH"] = str(Path(args.tree).resolve())
        os.chdir(tempfile.gettempdir())
    sizes = [int(size) for size in args.sizes.split(",")]
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-tap-") as tmp:
        for size in sizes:
            results.append(bench_size(size, args.repeat, args.tree, Path(tmp),
                                      incremental=not args.no_incremental
                                      and size == max(sizes), latency_ms=args.latency_ms,
                                      workers=args.workers))
    text = report(results)
    print("\n" + text)
    return {"results": results, "report": text}


if __name__ == "__main__":
    main()
