"""The upsert engine's entry point: plan each batch, start its writes, record outcomes.

One ``Loader`` lives for the whole run (owned by the target, shared by its sinks). It
ties the parts together:

* ``target_piriod.plan``: validate, key, merge, match and diff a batch (no I/O);
* ``target_piriod.write``: the writes on worker threads, their claims, and POSTs whose
  outcome is unknown;
* ``target_piriod.index``: every customer by id and match key, read once per run;
* ``target_piriod.lookup``: or, for a small load, its keys looked up one by one;
* ``target_piriod.report``: counters, progress lines and the dead-letter file.

A batch is planned whole in the calling thread, then its writes are handed to the
threads, and ``load()`` returns once the *previous* batch's writes are finished: batch
n+1 is read and planned while batch n is written, so the threads do not idle between
batches. The invariants:

* every key and every customer is in at most one write at a time (the claims of
  ``target_piriod.write``), and a later record for either is matched and diffed
  against what that write wrote;
* outcomes are recorded (index, counters, dead letters) on the calling thread only:
  the counters need no lock because no other thread touches them;
* at most one batch is in flight when ``load()`` returns, and ``flush()`` returns only
  once every write is done or dead-lettered;
* ``handled`` counts the records received (in order) that are wholly dealt with:
  written, unchanged, skipped or dead-lettered. It moves a whole batch at a time, once
  the batch was planned and every write of it recorded, and never past a record whose
  write is in flight, was given up or was never started. The target holds each STATE
  until the records before it are handled, so a STATE never gets ahead of unwritten
  records, and needs no barrier: records after it are read and written meanwhile.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import click
from typing_extensions import assert_never

from piriod.client import PiriodClient
from piriod.errors import (
    STATUS_HINTS,
    ApiError,
    AuthError,
    PiriodError,
    RetriesExhaustedError,
    StoppedError,
)
from target_piriod.actions import Action, Kind, Rejection
from target_piriod.config import Settings
from target_piriod.index import CustomerIndex
from target_piriod.jsonsafe import abridge
from target_piriod.keys import Key
from target_piriod.lookup import KeyLookups
from target_piriod.plan import MODES, Planner
from target_piriod.plan_log import PlanFile
from target_piriod.report import DeadLetterError, DeadLetterWriter, Report, Summary
from target_piriod.sinks import CustomersSink
from target_piriod.write import CustomerWriter, DryRun, Outcome, Writes

__all__ = ["MODES", "LoadError", "Loader", "Summary"]


class LoadError(click.ClickException):
    """A failure that stops the run: the message says what failed; a re-run resumes.

    A ClickException, so that the command line prints the message and exits 1 without
    a traceback: a failing API is an expected condition, not a bug.
    """


@dataclass
class _Batch:
    """One ``load()``: where it ends in the input, and what of it is still open."""

    end: int  # records received up to and including this batch
    open: int = 0  # writes of it whose outcome is not recorded yet
    planned: bool = False  # every action of it was counted or started


class Loader:
    """Upserts batches of customer records into Piriod."""

    def __init__(self, settings: Settings, logger: logging.Logger, run_id: str) -> None:
        self.spec = settings.spec
        self.dry_run = settings.dry_run
        max_workers = settings.max_workers
        self.logger = logger
        self.client = PiriodClient(
            settings.api_url, settings.auth_token, timeout=settings.request_timeout,
            max_retries=settings.max_retries, user_agent=settings.user_agent,
            pool_size=max_workers, logger=logger)
        dead_letters = DeadLetterWriter(settings.dead_letter_path, run_id,
                                        redact=self.client.redact)
        try:
            dead_letters.check()  # before anything is read or written
        except DeadLetterError as error:
            raise LoadError(str(error)) from error
        self.report = Report(dead_letters, logger, dry_run=self.dry_run,
                             client_counts=self._client_counts, redact=self.client.redact)
        self.plan_file = PlanFile(settings.plan_path, run_id, dry_run=self.dry_run,
                                  redact=self.client.redact) if settings.plan_path else None
        self.planner = Planner(self.spec, settings.mode, settings.empty_values)
        self.writes: Writes | DryRun = DryRun(self._record, logger) if self.dry_run else \
            Writes(CustomerWriter(self.client, self.spec, logger), max_workers, self._record)
        self.lookups = KeyLookups(
            self.client, self.spec, logger, max_workers=max_workers,
            full_batch=settings.batch_size_rows or CustomersSink.MAX_SIZE_DEFAULT,
            progress=self.report.indexing)
        self.lookup = SettledLookup(self.lookups, self.writes)
        self.received = 0  # records handed to load(), in order
        self.handled = 0  # the first `handled` of them are wholly dealt with
        self._batches: dict[int, _Batch] = {}  # not wholly handled yet, oldest first
        self._batch_number = 0

    @property
    def summary(self) -> Summary:
        """Return the run's counters so far."""
        return self.report.summary

    # -- the run -------------------------------------------------------------------------

    def load(self, records: Iterable[dict]) -> int:
        """Plan a batch and start its writes; return how many records were merged.

        Returns once the writes of the previous batch are finished (this batch's may
        still run: see ``flush()``).
        """
        records = list(records)
        self.summary.records += len(records)
        self.received += len(records)
        self._batch_number += 1
        batch = self._batches[self._batch_number] = _Batch(self.received)
        earlier = self.writes.started()
        with self._load_errors():
            self.lookups.prepare(records)  # the index, or this batch's keys looked up
            plan = self.planner.plan(records, self.lookup)
            for refusal in plan.refusals:
                self.report.reject(refusal.records, refusal.key, refusal.rejection)
            for action in plan.actions:
                action.batch = self._batch_number
                self._start(action, batch)
            batch.planned = True
            self._advance()
            self.writes.finish(earlier)
        self.summary.merged += plan.merged
        self.report.progress()
        return plan.merged

    def flush(self) -> None:
        """Return once every write started so far is done or dead-lettered."""
        with self._load_errors():
            self.writes.finish(self.writes.started())

    def stop(self) -> None:
        """Ask the run to stop (a signal): waits and retries give up, nothing new is sent.

        Requests already in flight finish. It only sets events, so a signal handler may
        call it; ``load()`` and ``flush()`` then raise ``StoppedError`` within a request.
        """
        self.client.stop()
        self.writes.stop()

    def halt(self) -> None:
        """After ``stop()``: give the writes in flight one request_timeout, record them.

        Writes still running then are given up (their records stay unhandled, so no
        STATE covers them); ``finish()`` does not wait for them.
        """
        given_up = self.writes.halt(self.client.timeout)
        if given_up:
            self.logger.warning("Gave up on %d write(s) still in flight after %g s: their "
                                "records are not covered by any STATE", given_up,
                                self.client.timeout)

    def finish(self) -> Summary:
        """Finish the writes in flight, stop the threads, close files; return the counters.

        The target calls ``flush()`` first, which raises on a fatal error; here (also
        reached after a failure) one is only logged, so that the summary still prints.
        """
        try:
            fatal = self.writes.close()
        except DeadLetterError as error:  # the file failed while recording the last writes
            fatal = error
            self.writes.close()  # the rest are recorded (counted, no longer dead-lettered)
        if fatal is not None:
            self.logger.error("A write failed: %s", abridge(self.client.redact(str(fatal))))
        self.client.close()
        if self.plan_file is not None:
            self.plan_file.close(planned=self.summary.records > 0)
            self.summary.plan_path = str(self.plan_file.path)
            self.summary.plan_lines = self.plan_file.count
        return self.report.finish()

    def check_access(self) -> int | None:
        """Read one page of customers (a connection test); return their count if told.

        Raises a LoadError naming the setting to fix (auth_token, api_url): a 401, 403 or
        404, or an API that cannot be reached, says so itself; anything else means api_url
        is not the Piriod API.
        """
        with self._load_errors():
            try:
                return self.client.check_access()
            except PiriodError as error:
                if isinstance(error, RetriesExhaustedError) or (
                        isinstance(error, ApiError) and error.status in STATUS_HINTS):
                    raise
                raise PiriodError(f"Piriod could not be read at {self.client.base_url} "
                                  f"({error}); check api_url") from error

    @contextmanager
    def _load_errors(self) -> Iterator[None]:
        """Turn the API's fatal errors into a LoadError that names what failed."""
        try:
            yield
        except StoppedError:
            raise  # not a failure: the run was asked to stop (see stop())
        except AuthError as error:  # the message names auth_token, api_url and the fix
            raise LoadError(self.client.redact(str(error))) from error
        except PiriodError as error:  # a value in it (an id in a path) may be megabytes
            raise LoadError(abridge(self.client.redact(str(error)))) from error
        except DeadLetterError as error:
            raise LoadError(str(error)) from error

    def reject_input(self, record: Any, message: str) -> None:
        """Count and dead-letter a record the input could not deliver (not an object...).

        It never reaches a batch, so it holds no position that a STATE waits for.
        """
        self.summary.records += 1
        with self._load_errors():
            self.report.reject([record], None, Rejection("invalid", message))

    def _start(self, action: Action, batch: _Batch) -> None:
        """Count what needs no write; hand the rest to the writes."""
        match action.kind:
            case Kind.UNCHANGED:
                self.summary.unchanged += 1
            case Kind.SKIP:
                self.summary.skipped += 1
            case Kind.CREATE | Kind.UPDATE:
                batch.open += 1
                self.writes.submit(action)
            case _:
                assert_never(action.kind)

    def _record(self, action: Action, outcome: Outcome) -> None:
        """Count a finished write and update the index, or dead-letter its records."""
        if isinstance(outcome, Rejection):
            self.report.reject(action.records, action.key, outcome)
        else:
            self.index.add(outcome)
            if action.kind is Kind.CREATE:
                self.summary.created += 1
            else:  # only creates and updates are written (_start)
                self.summary.updated += 1
            if self.plan_file is not None:  # planned (dry run), or written and accepted
                self.plan_file.write(action, outcome)
            self.logger.debug("%sd customer %s (%s=%r)", action.kind.value, outcome["id"],
                              *action.key)
        self._batches[action.batch].open -= 1  # last: only what was recorded is handled
        self._advance()

    def _advance(self) -> None:
        """Move ``handled`` past the oldest batches that are wholly dealt with."""
        for number, batch in list(self._batches.items()):
            if not batch.planned or batch.open:
                return
            del self._batches[number]
            self.handled = batch.end

    def _client_counts(self) -> tuple[int, int, int]:
        return self.client.requests_sent, self.client.retries, self.client.throttle.throttled

    @property
    def index(self) -> CustomerIndex:
        """Return the run's customer index: the whole account, or what lookups found."""
        return self.lookups.index


@dataclass
class SettledLookup:
    """What the planner may ask (``target_piriod.plan.Lookup``), answered for a run.

    Customers come from the run's ``KeyLookups`` (the index, or keys looked up one by
    one); a key or customer in a write in flight is first settled by the writes, so the
    planner matches against what that write wrote.
    """

    customers: KeyLookups
    writes: Writes | DryRun

    def customer(self, customer_id: str) -> dict | None:
        """Return a customer by id (see ``target_piriod.lookup``)."""
        return self.customers.customer(customer_id)

    def customers_with(self, value: str) -> list[dict]:
        """Return the customers whose match key is ``value``."""
        return self.customers.customers_with(value)

    def wait_for_key(self, key: Key) -> None:
        """Return once no write in flight holds this match key (recording those that did)."""
        self.writes.wait_for_key(key)

    def wait_for_customer(self, customer_id: str) -> bool:
        """Return once no write in flight holds this customer; True if one did."""
        return self.writes.wait_for_customer(customer_id)
