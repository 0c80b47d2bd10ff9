"""BATCH benchmark: the tap's BATCH mode against its RECORD mode, alone and into PostgreSQL.

1. The tap alone, ``--customers`` customers from one sandbox, ``--repeat`` rounds, the
   order of the variants rotating each round:

   * ``record``: RECORD messages to a file (the baseline);
   * ``batch``: BATCH messages, jsonl + gzip, 10,000 records a file (tap_piriod/batches.py);
   * ``batch-sdk``: the same batch_config through singer-sdk's own ``get_batches`` /
     ``JSONLinesBatcher`` (what the tap did before).

   Wall, CPU and peak RSS per run; medians, and each median's ratio to ``record``'s. The
   records of ``batch``'s files are checked to be ``record``'s RECORD messages, value for
   value.
2. gzip levels: one 10,000-record batch file compressed at levels 1, 3, 6 and 9 (the
   SDK's): seconds and bytes, against level 9.
3. ``meltano run tap-piriod target-postgres`` end to end (MeltanoLabs target-postgres as
   pinned in meltano.yml, a private PostgreSQL as the tests start), RECORD against BATCH
   (``--e2e-repeat`` rounds, alternating; each run into a fresh database). The loaded
   tables are checked to hold the same customers, column for column.

    python benchmarks/bench_batch.py                      # 100,000 customers, ~15 minutes
    python benchmarks/bench_batch.py --customers 20000 --repeat 2 --e2e-repeat 1
    python benchmarks/bench_batch.py --no-e2e             # the tap alone, and gzip levels

The Meltano project is a copy of meltano.yml in ``--project`` (default: a temp dir),
with tap-piriod installed from this checkout; ``meltano install`` runs once there.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

from common import ROOT, Run, SandboxProcess, run_measured, table, tool, write_json

sys.path.insert(0, str(ROOT / "tests"))
from postgres_server import PostgresServer

BATCH_SIZE = 10_000
# The SDK's batching, for the "before" figures: the stream's get_batches is the SDK's.
SDK_BATCH_TAP = ("from singer_sdk import Stream; from tap_piriod.streams import CustomersStream; "
                 "CustomersStream.get_batches = Stream.get_batches; "
                 "from tap_piriod.tap import TapPiriod; TapPiriod.cli()")
TAP_VARIANTS = ("record", "batch", "batch-sdk")


def batch_config(root: Path) -> dict:
    return {"encoding": {"format": "jsonl", "compression": "gzip"},
            "storage": {"root": root.as_uri()}, "batch_size": BATCH_SIZE}


def tap_command(variant: str, config: Path) -> list[str]:
    if variant == "batch-sdk":
        return [sys.executable, "-c", SDK_BATCH_TAP, "--config", str(config)]
    return [tool("tap-piriod"), "--config", str(config)]


def median_run(runs: list[Run]) -> dict:
    return {"wall": statistics.median(run.wall for run in runs),
            "cpu": statistics.median(run.cpu for run in runs),
            "peak_rss_mb": statistics.median(run.peak_rss_mb for run in runs),
            "walls": [round(run.wall, 2) for run in runs]}


def records_of_batches(singer_output: Path) -> list[dict]:
    records = []
    for line in singer_output.read_text().splitlines():
        message = json.loads(line)
        if message["type"] == "BATCH":
            for url in message["manifest"]:
                with gzip.open(url.removeprefix("file://"), "rt", encoding="utf-8") as lines:
                    records.extend(json.loads(row) for row in lines)
    return records


def records_of_messages(singer_output: Path) -> list[dict]:
    return [json.loads(line)["record"] for line in singer_output.read_text().splitlines()
            if line.startswith('{"type":"RECORD"')]


def bench_tap(sandbox: SandboxProcess, repeat: int, work: Path) -> dict:
    print(f"\n== the tap alone: {sandbox.seed:,} customers, {repeat} rounds ==", flush=True)
    configs = {}
    for variant in TAP_VARIANTS:
        config = {"auth_token": sandbox.token, "api_url": sandbox.url}
        if variant != "record":
            config["batch_config"] = batch_config(work / f"files-{variant}")
        configs[variant] = work / f"{variant}.json"
        configs[variant].write_text(json.dumps(config))
    runs: dict[str, list[Run]] = {variant: [] for variant in TAP_VARIANTS}
    for round_number in range(repeat):
        order = TAP_VARIANTS[round_number % 3:] + TAP_VARIANTS[:round_number % 3]
        for variant in order:
            shutil.rmtree(work / f"files-{variant}", ignore_errors=True)
            runs[variant].append(run_measured(
                variant, tap_command(variant, configs[variant]), sandbox=sandbox,
                stdout_path=work / f"{variant}.out", stderr_path=work / f"{variant}.err"))
        walls = ", ".join(f"{variant} {runs[variant][-1].wall:.2f} s"
                          for variant in TAP_VARIANTS)
        print(f"  round {round_number + 1}: {walls}", flush=True)
    same = records_of_batches(work / "batch.out") == records_of_messages(work / "record.out")
    print(f"  batch files hold the RECORD messages' records: {same}", flush=True)
    medians = {variant: median_run(runs[variant]) for variant in TAP_VARIANTS}
    return {"customers": sandbox.seed, "runs": medians, "same_records": same}


def bench_levels(work: Path, repeat: int = 3) -> dict:
    first = sorted((work / "files-batch").glob("*-1.json.gz"))[0]
    raw = gzip.decompress(first.read_bytes())
    results = {}
    for level in (1, 3, 6, 9):
        times = []
        for _ in range(repeat):
            started = time.perf_counter()
            size = len(gzip.compress(raw, compresslevel=level, mtime=0))
            times.append(time.perf_counter() - started)
        packed = gzip.compress(raw, compresslevel=level)
        unpacking = []
        for _ in range(repeat):
            started = time.perf_counter()
            zlib.decompress(packed, wbits=31)
            unpacking.append(time.perf_counter() - started)
        results[level] = {"seconds": statistics.median(times), "bytes": size,
                          "decompress_seconds": statistics.median(unpacking)}
    print(f"\n== gzip levels ({len(raw):,} bytes of JSONL) ==", flush=True)
    return {"raw_bytes": len(raw), "levels": results}


# -- meltano run, end to end -------------------------------------------------------------

def meltano_project(path: Path) -> Path:
    """Copy meltano.yml into ``path`` (tap-piriod from this checkout); install two plugins."""
    path.mkdir(parents=True, exist_ok=True)
    text = (ROOT / "meltano.yml").read_text().replace("pip_url: -e .\n", f"pip_url: -e {ROOT}\n")
    (path / "meltano.yml").write_text(text)
    (path / "output").mkdir(exist_ok=True)
    if not (path / ".meltano" / "loaders" / "target-postgres").exists():
        print(f"  meltano install in {path} ...", flush=True)
        subprocess.run([tool("meltano"), "install", "tap-piriod", "target-postgres"],
                       cwd=path, env=meltano_env({}), check=True, capture_output=True)
    return path


def meltano_env(extra: dict[str, str]) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("MELTANO_", "TAP_", "TARGET_"))}
    return {**env, "MELTANO_SEND_ANONYMOUS_USAGE_STATS": "false", **extra}


def loaded_digest(server: PostgresServer, database: str) -> tuple[int, str]:
    """Return (rows, md5 of every non-``_sdc`` column of every row, in id order)."""
    with server.connect(database) as connection:
        columns = [row[0] for row in connection.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = 'piriod' "
            "AND table_name = 'customers' AND column_name NOT LIKE '\\_sdc%' "
            "ORDER BY column_name")]
        listed = ", ".join(f'"{name}"' for name in columns)
        return connection.execute(
            f"SELECT count(*), md5(string_agg(row_text, E'\\n' ORDER BY id)) FROM "
            f"(SELECT id, ROW({listed})::text AS row_text FROM piriod.customers) AS rows"
        ).fetchone()


def bench_meltano(sandbox: SandboxProcess, repeat: int, project: Path, work: Path) -> dict:
    print(f"\n== meltano run tap-piriod target-postgres: {sandbox.seed:,} customers, "
          f"{repeat} rounds ==", flush=True)
    project = meltano_project(project)
    runs: dict[str, list[Run]] = {"record": [], "batch": []}
    digests = {}
    with PostgresServer() as server:
        for round_number in range(repeat):
            order = ("record", "batch") if round_number % 2 == 0 else ("batch", "record")
            for mode in order:
                database = f"warehouse_{mode}_{round_number}"
                server.create_database(database)
                files = work / f"meltano-files-{mode}"
                shutil.rmtree(files, ignore_errors=True)
                env = {"TAP_PIRIOD_API_URL": sandbox.url,
                       "TAP_PIRIOD_AUTH_TOKEN": sandbox.token,
                       "TARGET_POSTGRES_HOST": server.host,
                       "TARGET_POSTGRES_PORT": str(server.port),
                       "TARGET_POSTGRES_USER": server.user,
                       "TARGET_POSTGRES_PASSWORD": "unused",
                       "TARGET_POSTGRES_DATABASE": database,
                       "MELTANO_PROJECT_ROOT": str(project)}
                if mode == "batch":
                    env["TAP_PIRIOD_BATCH_CONFIG"] = json.dumps(batch_config(files))
                else:  # the plugin's own batch_config, if meltano.yml sets one, is off
                    env["TAP_PIRIOD_BATCH_CONFIG"] = "{}"
                runs[mode].append(run_measured(
                    f"meltano {mode}",
                    [tool("meltano"), "--environment=dev", "run", "--full-refresh",
                     "--no-state-update", "tap-piriod", "target-postgres"],
                    sandbox=sandbox, stderr_path=work / f"meltano-{mode}.err",
                    env=meltano_env(env), timeout=1800))
                digests[database] = loaded_digest(server, database)
            print(f"  round {round_number + 1}: record {runs['record'][-1].wall:.1f} s, "
                  f"batch {runs['batch'][-1].wall:.1f} s", flush=True)
    rows = {digest[0] for digest in digests.values()}
    same = len(set(digests.values())) == 1 and rows == {sandbox.seed}
    print(f"  every database holds the same {sorted(rows)} rows: {same}", flush=True)
    return {"runs": {mode: median_run(mode_runs) for mode, mode_runs in runs.items()},
            "same_rows": same}


def report(tap: dict, levels: dict, e2e: dict | None) -> str:
    base = tap["runs"]["record"]
    text = table(["tap-piriod", "wall s (median)", "vs record", "CPU s", "peak RSS MB",
                  "vs record", "walls"],
                 [[variant, f"{run['wall']:.2f}", f"{run['wall'] / base['wall']:.2f}x",
                   f"{run['cpu']:.2f}", f"{run['peak_rss_mb']:.0f}",
                   f"{run['peak_rss_mb'] / base['peak_rss_mb']:.2f}x", run["walls"]]
                  for variant, run in tap["runs"].items()])
    text += (f"\n\n{tap['customers']:,} customers; batch files hold the same records as the "
             f"RECORD messages: {tap['same_records']}.\n\n")
    nine = levels["levels"][9]
    text += table(["gzip level", "compress s per file", "vs level 9", "bytes", "vs level 9",
                   "decompress s"],
                  [[level, f"{row['seconds']:.3f}", f"{row['seconds'] / nine['seconds']:.2f}x",
                    f"{row['bytes']:,}", f"{row['bytes'] / nine['bytes']:.2f}x",
                    f"{row['decompress_seconds']:.3f}"]
                   for level, row in levels["levels"].items()])
    text += f"\n\nOne file: {BATCH_SIZE:,} records, {levels['raw_bytes']:,} bytes of JSONL."
    if e2e:
        record = e2e["runs"]["record"]
        text += "\n\n" + table(
            ["meltano run tap-piriod target-postgres", "wall s (median)", "vs RECORD",
             "walls"],
            [[mode.upper(), f"{run['wall']:.1f}", f"{run['wall'] / record['wall']:.2f}x",
              run["walls"]] for mode, run in e2e["runs"].items()])
        text += f"\n\nSame rows in every database: {e2e['same_rows']}."
    return text


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3, help="rounds of the tap alone")
    parser.add_argument("--e2e-repeat", type=int, default=2, help="rounds of meltano run")
    parser.add_argument("--no-e2e", action="store_true", help="skip meltano run")
    parser.add_argument("--project", type=Path, help="Meltano project dir (kept, reused)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-batch-") as tmp, \
            SandboxProcess(args.customers) as sandbox:
        work = Path(tmp)
        tap = bench_tap(sandbox, args.repeat, work)
        levels = bench_levels(work)
        e2e = None if args.no_e2e else bench_meltano(
            sandbox, args.e2e_repeat, args.project or work / "project", work)
    text = report(tap, levels, e2e)
    print("\n" + text)
    result = {"tap": tap, "levels": levels, "e2e": e2e, "report": text}
    write_json(ROOT / "benchmarks" / "results" / "batch.json", result)
    return result


if __name__ == "__main__":
    main()
