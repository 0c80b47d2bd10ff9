"""target-piriod's index read: pages one at a time (the baseline) against pages in parallel.

The index is read once per run before any write, so on a large account it is the floor
of every load, an unchanged re-run included. With latency per request, reading pages
`max_workers` at a time should divide that floor by about `max_workers`.

    .venv/bin/python benchmarks/bench_index.py [--customers 20000] [--latency-ms 20]
"""

from __future__ import annotations

import argparse
import time

from common import SandboxProcess

from piriod.client import PiriodClient


def read_index(sandbox: SandboxProcess, workers: int) -> tuple[float, int]:
    """Return the seconds to read every customer, and how many were read."""
    client = PiriodClient(sandbox.url, sandbox.token, pool_size=workers)
    started = time.perf_counter()
    count = sum(1 for _ in client.iter_customers({"ordering": "created"}))
    seconds = time.perf_counter() - started
    client.close()
    return seconds, count


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--customers", type=int, default=20000)
    parser.add_argument("--latency-ms", type=float, default=20.0)
    args = parser.parse_args(argv)
    with SandboxProcess(args.customers, "--latency-ms", str(args.latency_ms)) as sandbox:
        baseline, count = read_index(sandbox, 1)
        print(f"{count} customers, {args.latency_ms:g} ms per request, "
              f"{-(-count // 100)} pages of 100")
        print(f"  one page at a time: {baseline:6.2f} s  1.00x")
        results = {"customers": count, "latency_ms": args.latency_ms, "seconds": {1: baseline}}
        for workers in (4, 8):
            seconds, read = read_index(sandbox, workers)
            assert read == count, f"read {read} of {count}"
            print(f"  {workers} pages at a time:  {seconds:6.2f} s  {baseline / seconds:.2f}x")
            results["seconds"][workers] = seconds
    return results


if __name__ == "__main__":
    main()
