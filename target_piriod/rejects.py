"""The dead-letter file: one JSON line per rejected record, with its key and reason.

The file is appended to, never truncated: rejects of an earlier run stay until someone
has dealt with them. Each line names its run, so one run's rejects are easy to pick out.
"""

from __future__ import annotations

import datetime
import json
import threading
from pathlib import Path
from typing import Any

from target_piriod.matching import Key


class DeadLetterWriter:
    """Appends rejects to a JSONL file, opening it on the first one. Thread-safe."""

    def __init__(self, path: str | Path, run_id: str, redact: Any = None) -> None:
        self.path = Path(path)
        self.run_id = run_id
        self.count = 0
        self._redact = redact or (lambda text: text)
        self._lock = threading.Lock()
        self._file: Any = None

    def write(self, *, record: dict, key: Key | None, reason: str, message: str,
              status: int | None = None, error: Any = None, dry_run: bool = False) -> None:
        """Append one rejected record; flushed at once so a crash cannot lose it."""
        entry = {
            "run_id": self.run_id,
            "rejected_at": datetime.datetime.now(datetime.timezone.utc).isoformat(),
            "key": {"field": key[0], "value": key[1]} if key else None,
            "reason": reason,
            "message": message,
            "status": status,
            "error": error,
            "dry_run": dry_run,
            "record": record,
        }
        line = self._redact(json.dumps(entry, ensure_ascii=False, default=str))
        with self._lock:
            if self._file is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._file = self.path.open("a", encoding="utf-8")
            self._file.write(line + "\n")
            self._file.flush()
            self.count += 1

    def close(self) -> None:
        """Close the file if it was opened."""
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None
