"""Start a sandbox in its own process and drive its control API (tests, demo, benchmarks).

Each method wraps one ``/_sandbox/`` route (listed in piriod_sandbox.server); stamps are
ISO 8601 strings such as ``"2026-01-01T00:00:00Z"``, and an omitted stamp means the
server's now.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from types import TracebackType
from typing import Any

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

    def call(self, method: str, path: str, body: object = None) -> Any:
        """Call ``/_sandbox/<path>`` and return its JSON answer (each route's own shape)."""
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
        return self.call("PUT", "faults", plan)

    def stats(self) -> dict:
        """Return request and write counters since the last reset."""
        return self.call("GET", "stats")

    def reset_stats(self) -> None:
        """Zero the request and write counters."""
        self.call("POST", "stats/reset", {})

    def customers(self) -> list[dict]:
        """Return every customer in read shape, in creation order."""
        return self.call("GET", "customers")

    def touch(self, ids: list[str] | None = None, count: int = 0, updated: str | None = None,
              changes: dict | None = None, rng_seed: int | None = None) -> list[str]:
        """Change customers behind the API's back: set ``updated`` (now by default) and fields.

        Pass ``ids``, or ``count`` to pick that many at random. Returns the touched ids.
        A change naming an attribute the API does not document (``{"loyalty_tier": ...}``)
        adds it to those customers, as Piriod adding an attribute would.
        """
        body = {"ids": ids, "count": count, "updated": updated, "changes": changes or {},
                "rng_seed": rng_seed}
        return self.call("POST", "touch", body)["ids"]

    def delete(self, ids: list[str]) -> list[str]:
        """Delete customers (a back door: Piriod documents no DELETE); all or none.

        Afterwards they are gone from lists, and retrieving them answers 404.
        """
        return self.call("POST", "delete", {"ids": ids})["ids"]

    def insert(self, customer: dict, created: str | None = None, updated: str | None = None,
               customer_id: str | None = None) -> dict:
        """Insert a validated customer with past stamps (a late commit); return it.

        ``customer`` holds writable fields, as a POST body would. A missing stamp takes
        the other's value, both missing mean now; ``customer_id`` picks the id.
        """
        body = {"customer": customer, "created": created, "updated": updated,
                "id": customer_id}
        return self.call("POST", "insert", body)

    def stamp(self, ids: list[str] | None = None, first: int | None = None,
              updated: str | None = None, changes: dict | None = None,
              ordering: str | None = None) -> list[str]:
        """Set one ``updated`` on many customers in one transaction; return their ids.

        Picks ``ids``, else the ``first`` N (in ``ordering``, the list endpoint's syntax
        such as ``"created,id"``; creation order by default), else every customer.
        ``changes`` are applied unvalidated, as touch() does.
        """
        body = {"ids": ids, "first": first, "updated": updated, "changes": changes or {},
                "ordering": ordering}
        return self.call("POST", "stamp", body)["ids"]

    def tie_storm(self, count: int, updated: str | None = None, created: str | None = None,
                  rng_seed: int | None = None) -> list[str]:
        """Append ``count`` valid customers all sharing one ``updated``; return their ids.

        One request, one transaction (100,000 take a few seconds). ``created`` is shared
        too if given, else one millisecond apart just before ``updated``.
        """
        body = {"count": count, "updated": updated, "created": created, "rng_seed": rng_seed}
        return self.call("POST", "tie_storm", body)["ids"]

    def set_churn(self, **plan: object) -> dict:
        """Make the listing move on cue (see piriod_sandbox.churn.ChurnPlan); no args: stop.

        E.g. ``set_churn(at=3, deletes=2, inserts=1, within=10)``: exactly before the
        third list request is answered, delete 2 of the first 10 customers in creation
        order and insert one stamped between two of them.
        """
        return self.call("PUT", "churn", plan)

    def churn(self) -> dict:
        """Return the churn plan and what it did (list_requests, applied, deleted, inserted)."""
        return self.call("GET", "churn")

    def patch_faults(self, **changes: object) -> dict:
        """Merge keys into the current fault plan (its counters restart); return the plan."""
        return self.call("PATCH", "faults", changes)

    def break_listing(self, fault: str = "500", from_page: int = 1, after: int = 0) -> dict:
        """Make GET /customers/ answer ``fault`` every time until heal_listing().

        Applies to pages numbered ``from_page`` or more, once ``after`` list requests have
        been answered normally; ``fault`` is any fault name ("500", "503_html", "drop",
        "malformed", ...). Other faults in the plan are kept.
        """
        return self.patch_faults(list_fault=fault, list_fault_from_page=from_page,
                                 list_fault_after=after)

    def heal_listing(self) -> dict:
        """Undo break_listing(); the rest of the fault plan is kept."""
        return self.patch_faults(list_fault=None, list_fault_from_page=1, list_fault_after=0)
