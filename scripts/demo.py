"""`make demo`: the whole loop on embedded defaults, from a fresh clone, in one command.

1. start the local Piriod sandbox (500 customers) on 127.0.0.1:8765, the `dev` environment;
2. `meltano install` the four plugins the demo needs;
3. `meltano run tap-piriod target-duckdb`, then show what landed, queried from DuckDB;
4. edit and add customers in the sandbox, run again: only those rows move (Meltano state);
5. reverse ETL: a CRM export (JSONL) of edited and new customers goes back into Piriod with
   `meltano run tap-jsonl target-piriod`, matched on tax_id; print the target's summary;
6. model the copy with dbt (`meltano run dbt-duckdb:run dbt-duckdb:test`): a few rows;
7. stop the sandbox, and print the command that queries the warehouse.

Everything it writes is its own, under output/demo/: the DuckDB file (not the
output/warehouse.duckdb of your own `meltano run`), the export, the rejects file, the logs;
its Meltano state ids end in `:demo`. It starts from a clean slate each time: run it again
as often as you like.

To add a step, write a function taking the `Demo` and add it to STEPS with its title: the
steps are numbered in that order, and the sandbox is stopped after the last or a failure.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import duckdb

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
DEV_PORT, SEED = 8765, 500  # the dev environment's sandbox (meltano.yml)
PORT = int(os.environ.get("PIRIOD_DEMO_PORT", DEV_PORT))  # tests run the demo elsewhere
API = f"http://127.0.0.1:{PORT}"
TOKEN = "sandbox-token"  # noqa: S105 - the sandbox's published local token
DEMO = REPO / "output" / "demo"  # everything the demo writes, and nothing else
WAREHOUSE = DEMO / "warehouse.duckdb"
CRM_EXPORT = DEMO / "crm-export.jsonl"
REJECTS = DEMO / "target-piriod-rejects.jsonl"
SUFFIX = "demo"  # the demo's own state ids: dev:<tap>-to-<target>:demo
PLUGINS = ("tap-piriod", "target-duckdb", "tap-jsonl", "target-piriod", "dbt-duckdb")
# The query the demo ends with, for the reader to run (duckdb's Python package is in .venv).
QUERY = ("SELECT id, name, tax_id, updated FROM piriod.customers "
         "ORDER BY updated DESC LIMIT 5")


def say(text: str = "") -> None:
    """Print one line of the demo's story."""
    print(text, flush=True)


def shown(path: Path) -> str:
    """Return a path as the reader would type it: relative to the repository."""
    return str(path.relative_to(REPO))


def meltano(*args: str, log: str | None = None, check: bool = True) -> str:
    """Run meltano in the dev environment, on the demo's own files; log its output."""
    env = {**os.environ, "MELTANO_SEND_ANONYMOUS_USAGE_STATS": "false", "NO_COLOR": "1",
           "TARGET_DUCKDB_FILEPATH": str(WAREHOUSE), "TAP_JSONL_PATH": str(CRM_EXPORT),
           "TARGET_PIRIOD_DEAD_LETTER_PATH": str(REJECTS)}
    if PORT != DEV_PORT:
        env.update(TAP_PIRIOD_API_URL=API, TARGET_PIRIOD_API_URL=API)
    done = subprocess.run([str(BIN / "meltano"), "--environment=dev", *args], cwd=REPO,
                          env=env, capture_output=True, text=True)
    output = done.stdout + done.stderr
    if log:
        (DEMO / log).write_text(output)
    if check and done.returncode != 0:
        say(output[-4000:])
        raise SystemExit(f"demo: `meltano {' '.join(args)}` failed (exit {done.returncode})")
    return output


def api(method: str, path: str, body: object = None) -> object:
    """Call the sandbox: the Piriod API, or its /_sandbox/ control API."""
    request = urllib.request.Request(  # noqa: S310 - the local sandbox's http URL
        f"{API}{path}", method=method, data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310 - local sandbox
        return json.loads(response.read())


def start_sandbox() -> subprocess.Popen:
    """Start piriod-sandbox on 127.0.0.1:8765 (the dev environment's URL), seeded."""
    with socket.socket() as probe:
        if probe.connect_ex(("127.0.0.1", PORT)) == 0:
            raise SystemExit(f"demo: port {PORT} is in use (a `make sandbox` still running?); "
                             "stop it and run `make demo` again")
    process = subprocess.Popen([str(BIN / "piriod-sandbox"), "--port", str(PORT), "--seed",
                                str(SEED)], stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    line = process.stdout.readline().strip()
    if "listening on" not in line:
        process.kill()
        raise SystemExit(f"demo: the sandbox did not start: {line!r}")
    say(f"    {line}")
    return process


def stop_sandbox(process: subprocess.Popen) -> None:
    """Stop the sandbox (Ctrl-C, as a person would)."""
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


def warehouse(sql: str, *params: object) -> list[tuple]:
    """Query the DuckDB file that target-duckdb wrote."""
    with duckdb.connect(str(WAREHOUSE), read_only=True) as connection:
        return connection.execute(sql, params or None).fetchall()


def table(rows: list[tuple], headers: tuple[str, ...]) -> None:
    """Print rows as a small aligned table."""
    cells = [headers, *[tuple("" if v is None else str(v) for v in row) for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    for n, row in enumerate(cells):
        padded = (value.ljust(width) for value, width in zip(row, widths, strict=True))
        say("    " + "  ".join(padded))
        if n == 0:
            say("    " + "  ".join("-" * width for width in widths))


def clean_slate() -> None:
    """Forget the previous demo: its files and its Meltano state (nothing else)."""
    DEMO.mkdir(parents=True, exist_ok=True)
    for path in DEMO.iterdir():
        if path.is_file():
            path.unlink()
    for pipeline in ("tap-piriod-to-target-duckdb", "tap-jsonl-to-target-piriod"):
        meltano("state", "clear", "--force", f"dev:{pipeline}:{SUFFIX}", check=False)


def replicate(log: str) -> tuple[int, int, int]:
    """Run tap-piriod -> target-duckdb; return (rows, distinct ids, rows this run wrote)."""
    # target-duckdb stamps each row it writes with _sdc_batched_at: newer than before = moved.
    before = (warehouse("SELECT max(_sdc_batched_at) FROM piriod.customers")[0][0]
              if WAREHOUSE.exists() else datetime(1970, 1, 1))
    meltano("run", "--state-id-suffix", SUFFIX, "tap-piriod", "target-duckdb", log=log)
    return warehouse("SELECT count(*), count(DISTINCT id), "
                     "count(*) FILTER (WHERE _sdc_batched_at > ?) "
                     "FROM piriod.customers", before)[0]


@dataclass
class Demo:
    """What the steps share."""

    sandbox: subprocess.Popen
    facts: dict[str, object] = field(default_factory=dict)


def install(demo: Demo) -> None:
    """Install the plugins the demo needs, after forgetting the previous demo."""
    clean_slate()
    meltano("install", *PLUGINS, log="install.log")


def first_run(demo: Demo) -> None:
    """Replicate every customer into DuckDB and show some of them."""
    total, _, _ = replicate("run-1.log")
    say(f"    {total} customers landed in {shown(WAREHOUSE)} (table piriod.customers):")
    table(warehouse("SELECT id, name, json_extract_string(country, '$.id'), tax_id, "
                    "strftime(updated, '%Y-%m-%d %H:%M') FROM piriod.customers "
                    "ORDER BY updated DESC LIMIT 5"),
          ("id", "name", "country", "tax_id", "updated"))
    table(warehouse("SELECT json_extract_string(country, '$.name') AS country, count(*) "
                    "FROM piriod.customers GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 4"),
          ("country", "customers"))


def incremental_run(demo: Demo) -> None:
    """Change customers in Piriod; the next run moves only those."""
    edited = api("POST", "/_sandbox/touch",
                 {"count": 5, "changes": {"website": "https://www.edited-in-piriod.example"},
                  "rng_seed": 3})["ids"]
    for n in (1, 2):
        api("POST", "/customers/", {"name": f"Cliente Demo {n} SpA", "country": "CL",
                                    "tax_id": f"99.000.00{n}-{n}",
                                    "email": f"demo{n}@example.com"})
    say(f"    edited {', '.join(edited)}; created 2")
    total, distinct, moved = replicate("run-2.log")
    say(f"    {moved} rows moved: the 5 edited, the 2 new, and {moved - 7} read again "
        "(updated at the bookmark's very instant)")
    say(f"    {total} rows in the table, "
        + ("no duplicates" if distinct == total else f"{total - distinct} DUPLICATES"))


def reverse_etl(demo: Demo) -> None:
    """Send a CRM export (JSONL) of edited and new customers back into Piriod."""
    crm = warehouse("SELECT tax_id, name, email, json_extract_string(country, '$.id') "
                    "FROM piriod.customers ORDER BY tax_id LIMIT 3")
    rows = [{"tax_id": t, "name": n, "email": e, "country": c} for t, n, e, c in crm]
    rows[0]["name"] += " (renamed in CRM)"
    rows[1]["email"] = "billing@crm.example.com"
    rows += [{"tax_id": "98.000.001-1", "name": "Nuevo desde CRM SpA",
              "email": "crm1@example.com", "country": "CL"},
             {"tax_id": "98.000.002-2", "name": "Otro desde CRM Ltda.", "email": None,
              "country": "PE"}]
    CRM_EXPORT.write_text("".join(json.dumps(row) + "\n" for row in rows))
    say(f"    {len(rows)} rows in {shown(CRM_EXPORT)}: 1 renamed, 1 new email, "
        "1 unchanged, 2 new customers")
    output = meltano("run", "--state-id-suffix", SUFFIX, "tap-jsonl", "target-piriod",
                     log="reverse-etl.log")
    summary = [line for line in output.splitlines() if "target-piriod summary:" in line]
    say("    " + (summary[-1].split("target-piriod ", 1)[-1] if summary
                  else f"(no summary line: see {shown(DEMO)}/reverse-etl.log)"))
    renamed = api("GET", f"/customers/?tax_id={rows[0]['tax_id']}")["results"][0]
    say(f"    Piriod now has {renamed['id']}: {renamed['name']!r}")


def model(demo: Demo) -> None:
    """Build the dbt models on the demo's DuckDB file (dbt run, dbt test); show a few rows."""
    output = meltano("run", "dbt-duckdb:run", "dbt-duckdb:test", log="dbt.log")
    done = [line.split("Done. ", 1)[1] for line in output.splitlines() if "Done. PASS=" in line]
    say(f"    dbt test: {done[-1] if done else f'see {shown(DEMO)}/dbt.log'}")
    table(warehouse("SELECT customer_id, name, country_code, state_name, round(balance, 2), "
                    "contact_count FROM analytics.stg_piriod__customers WHERE NOT is_deleted "
                    "ORDER BY contact_count DESC, customer_id LIMIT 4"),
          ("customer_id", "name", "country_code", "state_name", "balance", "contact_count"))
    table(warehouse("SELECT customer_id, contact_id, name, email "
                    "FROM analytics.stg_piriod__customer_contacts "
                    "ORDER BY customer_id, contact_position LIMIT 3"),
          ("customer_id", "contact_id", "name", "email"))


# (title, step): printed as "==> N. title", run in this order. Add steps here.
STEPS: list[tuple[str, Callable[[Demo], None]]] = [
    ("meltano install " + " ".join(PLUGINS), install),
    ("meltano --environment=dev run tap-piriod target-duckdb", first_run),
    ("Edit 5 customers and add 2 in Piriod, then run incrementally", incremental_run),
    ("Reverse ETL: a CRM export back into Piriod "
     "(meltano run tap-jsonl target-piriod, matched on tax_id)", reverse_etl),
    ("Model the copy: meltano run dbt-duckdb:run dbt-duckdb:test (transform/)", model),
]


def query_command() -> str:
    """Return the shell command that queries the demo's warehouse (DuckDB has no CLI here)."""
    code = (f"import duckdb; db = duckdb.connect('{shown(WAREHOUSE)}', read_only=True); "
            f"db.sql('{QUERY}').show()")
    return f'.venv/bin/python -c "{code}"'


def main() -> None:
    """Run the demo: start the sandbox, run the steps, always stop the sandbox."""
    started = time.monotonic()
    # A `kill` stops the demo like Ctrl-C does: through the `finally` that stops the sandbox.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if not (BIN / "meltano").exists():
        raise SystemExit("demo: meltano is not in .venv: run `make demo` (it installs it)")
    say("==> 1. Start the Piriod sandbox (the `dev` environment's API)")
    demo = Demo(sandbox=start_sandbox())
    try:
        for number, (title, step) in enumerate(STEPS, start=2):
            say(f"==> {number}. {title}")
            step(demo)
    finally:
        say(f"==> {len(STEPS) + 2}. Stop the sandbox")
        stop_sandbox(demo.sandbox)
    say(f"Done in {time.monotonic() - started:.0f} s. Logs: {shown(DEMO)}/.")
    say("Query the demo's warehouse:")
    say(f"    {query_command()}")
    say("Try it yourself (README, Meltano): `make sandbox`, then in another terminal "
        "`. .venv/bin/activate`, `echo MELTANO_ENVIRONMENT=dev >> .env` and "
        "`meltano run tap-piriod target-duckdb` (into output/warehouse.duckdb).")


if __name__ == "__main__":
    main()
