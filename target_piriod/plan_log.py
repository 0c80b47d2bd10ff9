"""The plan and audit log (``plan_path``): one JSON line per customer created or updated.

With ``dry_run`` it is the plan of a load, for a person to review before running it:
each customer that would be created or updated, with its key, its id (updates) and, per
attribute, the value Piriod holds now and the one it would get::

    {"run_id": "3f2a9c1b7d42", "at": "2026-01-02T03:04:05+00:00", "dry_run": true,
     "action": "update", "key": {"field": "tax_id", "value": "76.000.001-5"},
     "id": "cus_1", "records": 1, "changes": {"email": {"from": "a@x.cl", "to": "b@x.cl"}}}

A create has ``"id": null`` in a dry run (the customer's new id in a real run) and every
attribute ``"from": null``. ``metadata`` shows the whole object before and after (the
API replaces it as a whole: what is sent is the merged object). Unchanged and skipped
customers have no line; rejected records are in the dead-letter file only.

Without ``dry_run`` the same lines record what was written, as an audit log: a line is
written once Piriod accepted the write, by the thread that records outcomes (see
``target_piriod.loader``), and flushed at once. A dry run replaces the file (it is the
plan of this input, nothing older); a real run appends to it (an audit log across runs),
so the plan and the audit log want two paths. Every line names its run.
"""

from __future__ import annotations

import datetime
import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from target_piriod.actions import Kind
from target_piriod.diff import creation_body

if TYPE_CHECKING:
    from target_piriod.actions import Action


def plan_entry(action: Action, customer_id: str | None) -> dict:
    """Return the run-independent part of a plan line: action, key, id, records, changes."""
    if action.kind is Kind.CREATE:
        body = creation_body(action.payload)
        changes = {name: {"from": None, "to": body[name]} for name in sorted(body)}
    else:
        current = action.current or {}
        changes = {name: {"from": current.get(name), "to": action.changes[name]}
                   for name in sorted(action.changes)}
    return {"action": action.kind.value, "key": {"field": action.key[0], "value": action.key[1]},
            "id": customer_id, "records": len(action.items), "changes": changes}


class PlanFile:
    """Writes plan lines to ``plan_path``, opening the file on the first one. Thread-safe."""

    def __init__(self, path: str | Path, run_id: str, *, dry_run: bool,
                 redact: Callable[[str], str] | None = None) -> None:
        self.path = Path(path)
        self.run_id = run_id
        self.dry_run = dry_run
        self.count = 0
        self._redact = redact or (lambda text: text)
        self._lock = threading.Lock()
        self._file: Any = None
        self._opened = False  # a dry run truncates the file once, on its first open

    def write(self, action: Action, outcome: dict) -> None:
        """Add the line of a create or update that was planned (dry run) or written."""
        customer_id = None if self.dry_run and action.kind is Kind.CREATE else outcome["id"]
        entry = {"run_id": self.run_id,
                 "at": datetime.datetime.now(datetime.timezone.utc).isoformat(),
                 "dry_run": self.dry_run, **plan_entry(action, customer_id)}
        line = self._redact(json.dumps(entry, ensure_ascii=False, default=str))
        with self._lock:
            self._open()
            self._file.write(line + "\n")
            self._file.flush()
            self.count += 1

    def close(self, *, planned: bool) -> None:
        """Close the file; a dry run that ``planned`` records but no write leaves it empty.

        (So the file never shows an older plan as this input's.) A run that read no
        record (Meltano's connection test, an empty input) leaves the file alone.
        """
        with self._lock:
            if self._file is None and self.dry_run and planned:
                self._open()
            if self._file is not None:
                self._file.close()
                self._file = None

    def _open(self) -> None:
        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            mode = "w" if self.dry_run and not self._opened else "a"
            self._file = self.path.open(mode, encoding="utf-8")
            self._opened = True
