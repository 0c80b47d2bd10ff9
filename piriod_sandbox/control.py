"""Start a sandbox in its own process and drive its control API (tests, demo, benchmarks)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from types import TracebackType

import requests

from piriod_sandbox.server import DEFAULT_TOKEN


class SandboxProcess:
    """A ``piriod-sandbox`` server process on an ephemeral 127.0.0.1 port.

    Use as a context manager; ``url`` and ``token`` are what a tap or target is configured
    with, and the methods below call the ``/_sandbox/`` control API over HTTP.
    """

    def __init__(self, seed: int = 0, *extra_args: str, token: str = DEFAULT_TOKEN) -> None:
        self.seed, self.extra_args, self.token = seed, list(extra_args), token
        self.url = ""
        self._process: subprocess.Popen | None = None

    def start(self, timeout: float = 60.0) -> SandboxProcess:
        """Start the server and wait for the line that names its URL."""
        command = [sys.executable, "-m", "piriod_sandbox", "--port", "0", "--seed",
                   str(self.seed), "--token", self.token, *self.extra_args]
        self._process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True,
                                         env={**os.environ, "PYTHONUNBUFFERED": "1"})
        deadline = time.monotonic() + timeout
        assert self._process.stdout is not None
        line = self._process.stdout.readline()
        if "listening on" not in line or time.monotonic() > deadline:
            self.stop()
            raise RuntimeError(f"piriod-sandbox did not start: {line!r}")
        self.url = line.split("listening on ")[1].split()[0]
        return self

    def stop(self) -> None:
        """Stop the server process."""
        if self._process and self._process.poll() is None:
            self._process.send_signal(signal.SIGINT)
            try:
                self._process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()

    @property
    def pid(self) -> int:
        """Return the server's process id (benchmarks measure its CPU time)."""
        assert self._process is not None
        return self._process.pid

    def __enter__(self) -> SandboxProcess:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.stop()

    # -- control API ---------------------------------------------------------------------

    def call(self, method: str, path: str, body: object = None) -> object:
        """Call ``/_sandbox/<path>`` and return its JSON answer."""
        response = requests.request(method, f"{self.url}/_sandbox/{path}", json=body,
                                    timeout=120)
        if response.status_code != 200:
            raise RuntimeError(f"sandbox control {method} {path}: {response.text}")
        return response.json()

    def reset(self, seed: int = 0, rng_seed: int = 7) -> None:
        """Replace all data with ``seed`` fresh customers; zero the counters."""
        self.call("POST", "reset", {"seed": seed, "rng_seed": rng_seed})

    def set_faults(self, **plan: object) -> dict:
        """Replace the fault plan (see piriod_sandbox.faults.FaultPlan); no args clears it."""
        return self.call("PUT", "faults", plan)  # type: ignore[return-value]

    def stats(self) -> dict:
        """Return request and write counters since the last reset."""
        return self.call("GET", "stats")  # type: ignore[return-value]

    def reset_stats(self) -> None:
        """Zero the request and write counters."""
        self.call("POST", "stats/reset", {})

    def customers(self) -> list[dict]:
        """Return every customer in read shape, in creation order."""
        return self.call("GET", "customers")  # type: ignore[return-value]

    def touch(self, ids: list[str] | None = None, count: int = 0, updated: str | None = None,
              changes: dict | None = None, rng_seed: int | None = None) -> list[str]:
        """Change customers behind the API's back: set ``updated`` (now by default) and fields.

        Pass ``ids``, or ``count`` to pick that many at random. Returns the touched ids.
        """
        body = {"ids": ids, "count": count, "updated": updated, "changes": changes or {},
                "rng_seed": rng_seed}
        return self.call("POST", "touch", body)["ids"]  # type: ignore[index]
