"""What a run tells the person running it: the summary, progress lines, the dead letters.

Every rejected record is appended to the dead-letter file with its key and reason, and
counted; the counters become the summary line (and an SDK metric) at the end; a long
load logs a progress line every ``PROGRESS_EVERY_SECONDS``. The counters belong to the
thread that calls the ``Loader`` (see ``target_piriod.loader``): worker threads never
touch them, so they need no lock. The dead-letter file is appended to, never truncated:
rejects of an earlier run stay until someone has dealt with them, and each line names
its run, so one run's rejects are easy to pick out.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from target_piriod.actions import Rejection
from target_piriod.jsonsafe import dumps_deep, shorten, shorten_values, strict_json
from target_piriod.keys import Key

PROGRESS_EVERY_SECONDS = 10.0  # a long load says how it is going this often


@dataclass
class Summary:
    """The counters of one run; ``line()`` is the summary printed at the end."""

    records: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    skipped: int = 0
    rejected: int = 0
    merged: int = 0
    requests: int = 0
    retries: int = 0
    throttled: int = 0
    seconds: float = 0.0
    dry_run: bool = False
    plan_path: str | None = None  # the plan file (plan_path), and its lines of this run
    plan_lines: int = 0

    def line(self) -> str:
        """Return ``target-piriod summary: created=.. updated=.. ... seconds=..``."""
        text = (f"target-piriod summary: records={self.records} created={self.created} "
                f"updated={self.updated} unchanged={self.unchanged} skipped={self.skipped} "
                f"rejected={self.rejected} seconds={self.seconds:.2f}")
        notes = ["dry run: no STATE emitted, nothing was written"] if self.dry_run else []
        if self.plan_path and self.dry_run:
            notes.append(f"plan: {self.plan_lines} customer(s) in {self.plan_path}")
        elif self.plan_path:
            notes.append(f"audit log: {self.plan_lines} write(s) appended to {self.plan_path}")
        return text + (f" ({'; '.join(notes)})" if notes else "")

    def as_dict(self) -> dict:
        """Return the counters as JSON-ready data (the metric's value)."""
        names = ("records", "created", "updated", "unchanged", "skipped", "rejected",
                 "merged", "requests", "retries", "throttled", "dry_run")
        return {name: getattr(self, name) for name in names} | {
            "seconds": round(self.seconds, 3)}


# Line breaks for str.splitlines() that json.dumps leaves unescaped (it escapes the rest).
_LINE_BREAKS = str.maketrans({"\x85": "\\u0085", "\u2028": "\\u2028", "\u2029": "\\u2029"})


class DeadLetterError(Exception):
    """The dead-letter file cannot be written: rejects would be lost, so the run stops."""


class DeadLetterWriter:
    r"""Appends rejects to a JSONL file, opened on the first one. Thread-safe.

    The path is checked at start-up (``check``): a run that could not keep its rejects
    stops before anything is written. Every line is JSON that any reader takes: NaN and
    infinities are spelled as strings, and text that is not UTF-8 (bytes read with
    ``surrogateescape``, lone surrogates) is kept as ``\udcXX`` escapes, the line then
    written in ASCII, so the record is never lost for how it is spelled. The record is
    written whole, once; the message, the error and the key are cut to a few hundred
    characters (``target_piriod.jsonsafe.shorten``).
    """

    def __init__(self, path: str | Path, run_id: str,
                 redact: Callable[[str], str] | None = None) -> None:
        self.path = Path(path)
        self.run_id = run_id
        self.count = 0
        self.error: DeadLetterError | None = None  # once the file failed, nothing more
        self._redact = redact or (lambda text: text)
        self._lock = threading.Lock()
        self._file: Any = None

    def check(self) -> None:
        """Make sure the file can be opened for appending; leave no new empty file."""
        existed = self.path.exists()
        try:
            if not self.path.parent.exists():
                self.path.parent.mkdir(parents=True)
            with self.path.open("ab"):
                pass
            if not existed:
                self.path.unlink()
        except OSError as error:
            raise self._failed(error) from error

    def write(self, *, record: Any, key: Key | None, rejection: Rejection,
              dry_run: bool = False) -> bool:
        """Append one rejected record, flushed at once so a crash cannot lose it.

        Returns False, writing nothing, once the file has failed (the run is stopping);
        raises DeadLetterError when it fails.
        """
        entry = {
            "run_id": self.run_id,
            "rejected_at": datetime.datetime.now(datetime.timezone.utc).isoformat(),
            "key": {"field": key[0], "value": shorten(key[1])} if key else None,
            "reason": rejection.reason,
            "message": shorten(rejection.message),
            "status": rejection.status,
            "error": shorten_values(rejection.error),
            "dry_run": dry_run,
            "record": record,
        }
        data = (self._line(entry) + "\n").encode("utf-8")
        with self._lock:
            if self.error is not None:
                return False
            try:
                if self._file is None:
                    if not self.path.parent.exists():
                        self.path.parent.mkdir(parents=True)
                    self._file = self.path.open("ab")
                self._file.write(data)
                self._file.flush()
            except OSError as error:
                raise self._failed(error) from error
            self.count += 1
            return True

    def _line(self, entry: dict) -> str:
        """Return the entry as one JSON line: UTF-8 if it can be, else ASCII-escaped.

        NEL and the Unicode line and paragraph separators are escaped too: JSON lets
        them stand in a string, but readers that split lines on them (Python's
        ``splitlines``) would cut the line in two.
        """
        try:
            line = json.dumps(strict_json(entry), ensure_ascii=False)
            line.encode("utf-8")
        except UnicodeEncodeError:
            line = json.dumps(strict_json(entry), ensure_ascii=True)
        except RecursionError:  # a record nested deeper than Python recurses
            line = dumps_deep(entry)
        return self._redact(line.translate(_LINE_BREAKS))

    def _failed(self, error: OSError) -> DeadLetterError:
        why = error.strerror or str(error)
        self.error = DeadLetterError(
            f"cannot write the dead-letter file {self.path} ({why}); rejected records "
            "would be lost, so the run stops (set dead_letter_path to a writable file)")
        return self.error

    def close(self) -> None:
        """Close the file if it was opened."""
        with self._lock:
            if self._file is not None:
                with contextlib.suppress(OSError):  # a failed flush was reported
                    self._file.close()
                self._file = None


class Report:
    """The run's counters, its dead letters and its progress lines."""

    def __init__(self, dead_letters: DeadLetterWriter, logger: logging.Logger, *,
                 dry_run: bool, client_counts: Callable[[], tuple[int, int, int]],
                 redact: Callable[[str], str]) -> None:
        self.summary = Summary(dry_run=dry_run)
        self.dead_letters = dead_letters
        self.logger = logger
        self._client_counts = client_counts  # requests, retries, throttled so far
        self._redact = redact
        self._started = self._last_progress = time.monotonic()

    def reject(self, records: list[Any], key: Key | None, rejection: Rejection) -> None:
        """Count records and dead-letter them with their key and reason.

        Raises DeadLetterError if the file fails (the run must stop: no STATE may pass
        them); once it has, later rejects are only counted and logged.
        """
        self.summary.rejected += len(records)
        self.logger.warning("Rejected %d record(s) with %s: %s (%s)", len(records),
                            shorten(f"{key[0]}={key[1]!r}") if key else "no key",
                            rejection.reason, shorten(self._redact(rejection.message)))
        for record in records:
            if not self.dead_letters.write(record=record, key=key, rejection=rejection,
                                           dry_run=self.summary.dry_run):
                self.logger.warning("Not in the dead-letter file, which failed: the "
                                    "record(s) above")
                return

    def progress(self) -> None:
        """Log the counters so far, at most every PROGRESS_EVERY_SECONDS."""
        now = time.monotonic()
        if now - self._last_progress < PROGRESS_EVERY_SECONDS:
            return
        self._last_progress, done = now, self.summary
        requests, retries, throttled = self._client_counts()
        self.logger.info(
            "Progress: %d records (%.0f records/s): %d created, %d updated, %d unchanged, "
            "%d rejected; %d requests, %d retries, %d throttled", done.records,
            done.records / (now - self._started), done.created, done.updated, done.unchanged,
            done.rejected, requests, retries, throttled)

    def indexing(self, customers: Iterator[dict]) -> Iterator[dict]:
        """Pass the index's customers through, saying every so often how many were read."""
        started = last = time.monotonic()
        for count, customer in enumerate(customers, 1):
            yield customer
            if time.monotonic() - last >= PROGRESS_EVERY_SECONDS:
                last = time.monotonic()
                requests, retries, _ = self._client_counts()
                self.logger.info("Indexing: %d customers read (%.0f/s, %d requests, %d "
                                 "retries)", count, count / (last - started), requests,
                                 retries)

    def finish(self) -> Summary:
        """Close the dead-letter file; return the summary with the run's final figures."""
        self.dead_letters.close()
        summary = self.summary
        summary.seconds = time.monotonic() - self._started
        summary.requests, summary.retries, summary.throttled = self._client_counts()
        return summary
