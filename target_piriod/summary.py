"""The end of a run, said once: the summary line, its metric, and the max_rejects verdict.

The summary is printed on stderr (and logged as an SDK metric) when the load ends, when
it fails (marked ``(run failed)``, before the error's message) and when a signal stops
it (``(interrupted)``): whoever ran it learns what was written and rejected either way.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import click
from singer_sdk.metrics import get_metrics_logger

from target_piriod.loader import LoadError, Summary
from target_piriod.routing import STREAM


class TooManyRejectsError(click.ClickException):
    """More records were rejected than ``max_rejects`` allows."""


def print_summary(summary: Summary, run_id: str, *, failed: bool = False,
                  interrupted: bool = False) -> Summary:
    """Print the one-line summary on stderr and log it as an SDK metric."""
    line = summary.line() + (" (run failed)" if failed else "") + (
        " (interrupted)" if interrupted else "")
    sys.stderr.write(line + "\n")
    sys.stderr.flush()
    point = {"type": "summary", "metric": "target_piriod_summary",
             "value": summary.as_dict(), "tags": {"stream": STREAM, "run_id": run_id,
                                                  "failed": failed,
                                                  "interrupted": interrupted}}
    get_metrics_logger().info("METRIC: %s", json.dumps(point, separators=(",", ":")))
    return summary


@contextlib.contextmanager
def summary_on_failure(report_failure: Callable[[], None]) -> Iterator[None]:
    """When a load fails (a LoadError), call ``report_failure`` before the error goes on."""
    try:
        yield
    except LoadError:
        report_failure()
        raise


def check_rejects(summary: Summary, limit: int, dead_letters: Path, run_id: str) -> None:
    """Fail the run if more records were rejected than ``max_rejects`` allows."""
    if summary.rejected > limit:
        raise TooManyRejectsError(
            f"{summary.rejected} record(s) rejected, more than max_rejects={limit}; "
            f"see {dead_letters} (lines with run_id {run_id}) for each one's reason: fix "
            "them at the source and run again (the other records were loaded), or "
            "raise max_rejects to accept them")
