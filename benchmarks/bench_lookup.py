"""target-piriod's key lookups: a small load into a large account, against the index path.

Before lookups, every run read the whole account into its index first (one GET per 100
customers), however few records it carried. This runs the same small load (4 updates by
tax_id, 3 by id, 3 creates; ``match_field=tax_id``, ``max_workers=8``) twice on a fresh
sandbox of N customers with L ms of latency per request:

* as the target decides (a first batch that is not full, under the index's cost: lookups);
* with ``batch_size_rows`` equal to the load's size, so that its one batch is full and
  the target reads the index, as every run did before;

and checks that both end in the same state (every customer's writable attributes). Then
a large load (``--big`` new records, ``dry_run`` so that only the decision and the index
read are measured, not the POSTs) must still read the index.

    .venv/bin/python benchmarks/bench_lookup.py [--customers 100000] [--latency-ms 20]
                                                [--big 50000]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
import tempfile
from pathlib import Path

from common import Run, SandboxProcess, run_measured, table, tool

from piriod.client import PiriodClient
from piriod.schema import writable_attributes

MAX_WORKERS = 8
WRITABLE = writable_attributes()


def small_load(customers: list[dict]) -> list[dict]:
    """4 updates by tax_id, 3 by id, 3 creates (tax ids the seed does not use)."""
    by_tax_id = [{"tax_id": c["tax_id"], "address": f"Av. Lookup {n}"}
                 for n, c in enumerate(customers[100:104])]
    by_id = [{"id": c["id"], "phone": f"+56 2 3000 000{n}"}
             for n, c in enumerate(customers[200:203])]
    new = [{"name": f"Nuevo Lookup {n} SpA", "tax_id": f"99.{n:03d}.000-K", "country": "CL",
            "email": f"lookup{n}@bench.example", "currency": "CLP"} for n in range(3)]
    return [*by_tax_id, *by_id, *new]


def big_load(count: int) -> list[dict]:
    return [{"name": f"Grande {n} SpA", "tax_id": f"98.{n // 1000:03d}.{n % 1000:03d}-K",
             "country": "CL", "currency": "CLP"} for n in range(count)]


def write_singer(path: Path, rows: list[dict]) -> Path:
    schema = json.loads((Path(__file__).resolve().parent.parent / "schemas" /
                         "customers.json").read_text())
    with path.open("w", encoding="utf-8") as out:
        out.write(json.dumps({"type": "SCHEMA", "stream": "customers", "schema": schema,
                              "key_properties": ["tax_id"]}) + "\n")
        out.writelines(json.dumps({"type": "RECORD", "stream": "customers", "record": row})
                       + "\n" for row in rows)
        out.write(json.dumps({"type": "STATE", "value": {"benchmark": path.stem}}) + "\n")
    return path


def run_target(label: str, work: Path, sandbox: SandboxProcess, singer: Path,
               **settings: object) -> Run:
    config = work / f"{label}.json"
    config.write_text(json.dumps({
        "auth_token": sandbox.token, "api_url": sandbox.url, "match_field": "tax_id",
        "max_workers": MAX_WORKERS, "dead_letter_path": str(work / "rejects.jsonl"),
        **settings}))
    err = work / f"{label}.err"
    run = run_measured(label, [tool("target-piriod"), "--config", str(config)],
                       sandbox=sandbox, stdin_path=singer, stderr_path=err,
                       stdout_path=work / f"{label}.state")
    log = err.read_text(errors="replace")
    run.extra["path"] = "index" if re.search(r"Indexed \d+ customers", log) else "lookups"
    run.extra["summary"] = (re.findall(r"target-piriod summary: .*", log) or [""])[-1]
    print(f"  {label}: {run.extra['path']}, {run.requests} requests ({run.writes} writes), "
          f"{run.wall:.2f} s; {run.extra['summary']}", flush=True)
    if run.returncode != 0:
        sys.exit(f"{label} failed:\n{log[-3000:]}")
    return run


def state_digest(sandbox: SandboxProcess) -> tuple[int, str]:
    """Return (customers, a digest of every customer's writable attributes)."""
    client = PiriodClient(sandbox.url, sandbox.token, pool_size=MAX_WORKERS)
    rows = sorted(json.dumps({name: customer.get(name) for name in WRITABLE},
                             sort_keys=True)
                  for customer in client.iter_customers({"ordering": "created"}))
    client.close()
    return len(rows), hashlib.sha256("\n".join(rows).encode()).hexdigest()[:16]


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--big", type=int, default=50_000,
                        help="records of the large load (dry run; 0: skip it)")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="bench-lookup-"))
    print(f"== target: 10 records into {args.customers:,} customers, "
          f"{args.latency_ms:g} ms per request ==", flush=True)
    results: dict = {"customers": args.customers, "latency_ms": args.latency_ms}
    with SandboxProcess(args.customers) as sandbox:
        rows = small_load(sandbox.customers())
        singer = write_singer(work / "small.singer.jsonl", rows)
        sandbox.set_faults(latency_ms=args.latency_ms)
        lookups = run_target("lookups", work, sandbox, singer)
        sandbox.set_faults()
        after_lookups = state_digest(sandbox)
        sandbox.reset(args.customers)
        sandbox.set_faults(latency_ms=args.latency_ms)
        index = run_target("index", work, sandbox, singer, batch_size_rows=len(rows))
        sandbox.set_faults()
        after_index = state_digest(sandbox)
        print(f"  final state: {after_lookups} after lookups, {after_index} after the index "
              f"path: {'the same' if after_lookups == after_index else 'DIFFERENT'}")
        results.update(lookups=lookups.as_dict(), index=index.as_dict(),
                       same_state=after_lookups == after_index,
                       state=list(after_lookups))
        if args.big:
            sandbox.reset(args.customers)
            big = write_singer(work / "big.singer.jsonl", big_load(args.big))
            sandbox.set_faults(latency_ms=args.latency_ms)
            large = run_target("large", work, sandbox, big, dry_run=True)
            sandbox.set_faults()
            results["large"] = {"records": args.big, **large.as_dict()}
    print()
    print(report(results))
    return results


def report(results: dict) -> str:
    rows = []
    for key, label in (("lookups", "10 records, as the target decides"),
                       ("index", "10 records, index forced (batch_size_rows=10)"),
                       ("large", f"{results.get('large', {}).get('records', 0):,} new "
                                 "records (dry run)")):
        run = results.get(key)
        if run:
            gets = run["stats"]["by_method"].get("GET", 0)
            rows.append([label, run["extra"]["path"], run["requests"], gets, run["writes"],
                         f"{run['wall']:.2f}"])
    text = table(["run", "path", "requests", "GETs", "writes", "wall s"], rows)
    return text + (f"\n\nSame final state: {results['same_state']} "
                   f"({results['state'][0]:,} customers, digest {results['state'][1]})")


if __name__ == "__main__":
    main()
