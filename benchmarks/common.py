"""Measuring helpers shared by the benchmarks: processes, CPU, memory, the machine.

Standard library only. A measured command runs as a child process; ``os.wait4`` gives its
own CPU time and peak RSS (not those of other children, such as the sandbox), taken by a
small intermediate process (see ``_MEASURE``). The sandbox's CPU time is read from
``/proc/<pid>/stat`` before and after.
"""

from __future__ import annotations

import ast
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
sys.path.insert(0, str(ROOT))

from piriod_sandbox import SandboxProcess  # noqa: E402

_TICKS = os.sysconf("SC_CLK_TCK")


def process_cpu_seconds(pid: int) -> float:
    """Return a live process's user + system CPU seconds so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS  # utime, stime (fields 14, 15)


@dataclass
class Run:
    """One measured child process."""

    label: str
    wall: float
    cpu: float
    peak_rss_mb: float
    returncode: int
    sandbox_cpu: float = 0.0
    sandbox_busy: float = 0.0
    requests: int = 0
    writes: int = 0
    stats: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)

    @property
    def sandbox_share(self) -> float:
        """Sandbox CPU seconds per wall second of the run (1.0 = one core all the time)."""
        return self.sandbox_cpu / self.wall if self.wall else 0.0

    def as_dict(self) -> dict:
        return {**asdict(self), "sandbox_share": round(self.sandbox_share, 4)}


# Runs a command and reports its rusage. The measured command is started from this small
# process rather than from the benchmark: Linux reports as a child's peak RSS the larger
# of its own and its parent's peak at the fork, and the benchmark's is large.
_MEASURE = """
import os, sys, time
out, command = sys.argv[1], sys.argv[2:]
started = time.perf_counter()
pid = os.posix_spawn(command[0], command, os.environ)
_, status, usage = os.wait4(pid, 0)
wall = time.perf_counter() - started
with open(out, "w") as handle:
    handle.write(repr((wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss,
                       os.waitstatus_to_exitcode(status))))
"""


def run_measured(label: str, command: list[str], *, sandbox: SandboxProcess | None = None,
                 stdin_path: Path | None = None, stdout_path: Path | None = None,
                 stderr_path: Path | None = None, env: dict | None = None,
                 timeout: float = 900) -> Run:
    """Run ``command`` to completion; return its wall, CPU, peak RSS and the sandbox's cost."""
    if sandbox is not None:
        sandbox.reset_stats()
        sandbox_cpu_before = process_cpu_seconds(sandbox.pid)
    stdin = open(stdin_path, "rb") if stdin_path else subprocess.DEVNULL  # noqa: SIM115
    stdout = open(stdout_path, "wb") if stdout_path else subprocess.DEVNULL  # noqa: SIM115
    stderr = open(stderr_path, "wb") if stderr_path else subprocess.DEVNULL  # noqa: SIM115
    with tempfile.NamedTemporaryFile("r", suffix=".rusage") as rusage:
        try:
            subprocess.run([sys.executable, "-S", "-c", _MEASURE, rusage.name,
                            shutil.which(command[0]) or command[0], *command[1:]],
                           stdin=stdin, stdout=stdout, stderr=stderr, timeout=timeout,
                           env={**os.environ, **(env or {})}, check=False,
                           cwd=tempfile.gettempdir())  # not ROOT: see bench_tap --tree
        finally:
            for handle in (stdin, stdout, stderr):
                if hasattr(handle, "close"):
                    handle.close()
        wall, cpu, maxrss_kb, returncode = ast.literal_eval(rusage.read() or "(0, 0, 0, -1)")
    run = Run(label, wall, cpu, maxrss_kb / 1024, returncode)
    if sandbox is not None:
        run.sandbox_cpu = process_cpu_seconds(sandbox.pid) - sandbox_cpu_before
        run.stats = sandbox.stats()
        run.sandbox_busy = run.stats["busy_seconds"]
        run.requests = run.stats["requests"]
        run.writes = run.stats["writes"]
    if run.returncode != 0 and stderr_path:
        tail = Path(stderr_path).read_text(errors="replace")[-2000:]
        print(f"  !! {label} exited {run.returncode}:\n{tail}", file=sys.stderr)
    return run


def best(runs: list[Run]) -> Run:
    """Return the fastest run (the least disturbed by other work on the machine)."""
    return min(runs, key=lambda run: run.wall)


def spread(runs: list[Run]) -> str:
    """Describe the walls of repeated runs, e.g. ``best 5.10 s, median 5.32 s of 3``."""
    walls = [run.wall for run in runs]
    return f"best {min(walls):.2f} s, median {statistics.median(walls):.2f} s of {len(walls)}"


def machine() -> dict:
    """Describe the machine: cores, CPU model, Python, SQLite, load when measured."""
    model = "unknown"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    import sqlite3

    import requests

    try:
        import orjson
        orjson_version = orjson.__version__
    except ImportError:
        orjson_version = "not installed"
    from importlib.metadata import version

    return {"cores": os.cpu_count(), "cpu": model, "python": platform.python_version(),
            "platform": platform.platform(), "sqlite": sqlite3.sqlite_version,
            "singer_sdk": version("singer-sdk"), "requests": requests.__version__,
            "orjson": orjson_version, "load_average": [round(x, 2) for x in os.getloadavg()]}


def tool(name: str) -> str:
    """Return the path of a console script of this venv (``tap-piriod``...)."""
    return str(VENV_BIN / name)


def write_json(path: Path, value: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value, indent=2, default=str) + "\n")


def table(headers: list[str], rows: list[list[object]]) -> str:
    """Return a Markdown table."""
    cells = [[str(cell) for cell in row] for row in rows]
    lines = ["| " + " | ".join(headers) + " |",
             "| " + " | ".join("---:" if i else "---" for i in range(len(headers))) + " |"]
    lines += ["| " + " | ".join(row) + " |" for row in cells]
    return "\n".join(lines)
