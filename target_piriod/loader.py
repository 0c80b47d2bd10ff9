"""The upsert engine: plan a batch (validate, key, merge, match, diff), then write it.

One ``Loader`` lives for the whole run (owned by the target, shared by its sinks): it
holds the HTTP client, the customer index read once at the first batch, the writer
threads, the dead-letter file and the counters of the summary line.

A batch is planned whole in the calling thread, then its writes are handed to the
threads, and ``load()`` returns once the *previous* batch's writes are finished: batch
n+1 is read and planned while batch n is written, so the threads do not idle between
batches. The invariants:

* records with the same key are merged first (the later values win) and every key and
  every customer appears in exactly one write at a time: two threads can never race
  two POSTs for one key, nor two PATCHes for one customer. Each write in flight
  *claims* its keys, the match key its payload sets and its customer's id; planning a
  record whose key or customer is claimed first waits for that write and records its
  outcome, so the later record is matched and diffed against what it wrote;
* outcomes are recorded (index, counters, dead letters) in the calling thread only;
* at most one batch is in flight when ``load()`` returns, and ``flush()`` returns only
  once every write is done or dead-lettered: the target calls it before emitting a
  STATE, which therefore never gets ahead of unwritten records.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import reduce
from typing import Any

import click

from target_piriod.client import (
    ApiError,
    AuthError,
    OutcomeUnknownError,
    PiriodClient,
    PiriodError,
    RetriesExhaustedError,
)
from target_piriod.matching import (
    FILTERABLE,
    CustomerIndex,
    Key,
    KeySpec,
    changes_for,
    creation_body,
    customer_shape,
    merge_payloads,
    record_key,
)
from target_piriod.records import PayloadValidator, to_payload
from target_piriod.rejects import DeadLetterWriter

MODES = ("upsert", "create_only", "update_only")
PROGRESS_EVERY_SECONDS = 10.0  # a long load says how it is going this often


@dataclass
class Item:
    """One valid incoming record, its key and its write payload."""

    record: dict
    key: Key
    payload: dict


@dataclass
class Action:
    """What to do for one customer: create, update, unchanged or skip (create_only)."""

    kind: str
    key: Key
    items: list[Item]
    payload: dict
    current: dict | None = None
    changes: dict = field(default_factory=dict)

    def claims(self, spec: KeySpec) -> set[str]:
        """Return what this write must hold alone while in flight (see the module doc)."""
        claimed = {key_claim(item.key) for item in self.items}
        value = spec.value_of(self.payload) if spec.field != "id" else None
        if value is not None:
            claimed.add(key_claim((spec.label, value)))
        if self.current is not None:
            claimed.add(id_claim(self.current["id"]))
        return claimed


def key_claim(key: Key) -> str:
    """Return the claim of a match key (``key:tax_id:76.1-K``)."""
    return f"key:{key[0]}:{key[1]}"


def id_claim(customer_id: str) -> str:
    """Return the claim of a customer (``id:cus_1``)."""
    return f"id:{customer_id}"


@dataclass
class Rejection:
    """Why the API (or the plan) refused an action's records."""

    reason: str
    message: str
    status: int | None = None
    error: Any = None


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

    def line(self) -> str:
        """Return ``target-piriod summary: created=.. updated=.. ... seconds=..``."""
        text = (f"target-piriod summary: records={self.records} created={self.created} "
                f"updated={self.updated} unchanged={self.unchanged} skipped={self.skipped} "
                f"rejected={self.rejected} seconds={self.seconds:.2f}")
        return text + (" (dry run: nothing was written)" if self.dry_run else "")

    def as_dict(self) -> dict:
        """Return the counters as JSON-ready data (the metric's value)."""
        names = ("records", "created", "updated", "unchanged", "skipped", "rejected",
                 "merged", "requests", "retries", "throttled", "dry_run")
        return {name: getattr(self, name) for name in names} | {
            "seconds": round(self.seconds, 3)}


class LoadError(click.ClickException):
    """A failure that stops the run: the message says what failed; a re-run resumes.

    A ClickException, so that the command line prints the message and exits 1 without
    a traceback: a failing API is an expected condition, not a bug.
    """


class Loader:
    """Upserts batches of customer records into Piriod."""

    def __init__(self, config: Mapping[str, Any], logger: logging.Logger,
                 run_id: str) -> None:
        self.spec = KeySpec.parse(config.get("match_field") or "id")
        self.mode = config.get("mode") or "upsert"
        self.dry_run = bool(config.get("dry_run"))
        self.max_workers = max(1, int(config.get("max_workers") or 4))
        self.logger = logger
        self.client = PiriodClient(
            config.get("api_url") or "https://api.piriod.com", config["auth_token"],
            timeout=float(config.get("request_timeout") or 30),
            max_retries=int(config.get("max_retries", 5)),
            user_agent=config.get("user_agent") or "target-piriod",
            pool_size=self.max_workers, logger=logger)
        self.rejects = DeadLetterWriter(
            config.get("dead_letter_path") or "target-piriod-rejects.jsonl", run_id,
            redact=self.client.redact)
        self.summary = Summary(dry_run=self.dry_run)
        self._validator = PayloadValidator()
        self._index: CustomerIndex | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._in_flight: dict[Future, Action] = {}  # submitted, outcome not yet recorded
        self._claims: dict[str, set[Future]] = {}  # key_claim/id_claim -> writes holding it
        self._started = self._last_report = time.monotonic()
        self._dry_run_ids = 0

    # -- the run -------------------------------------------------------------------------

    def load(self, records: Iterable[dict]) -> int:
        """Plan a batch and start its writes; return how many records were merged.

        Returns once the writes of the previous batch are finished (this batch's may
        still run: see ``flush()``).
        """
        records = list(records)
        self.summary.records += len(records)
        earlier = list(self._in_flight)
        with self._load_errors():
            items = [item for item in map(self._prepare, records) if item is not None]
            actions = self._plan(items)
            self._write_all(actions)
            self._finish_writes(earlier)
        merged = sum(len(action.items) - 1 for action in actions)
        self.summary.merged += merged
        self._report_progress()
        return merged

    def flush(self) -> None:
        """Return once every write started so far is done or dead-lettered."""
        with self._load_errors():
            self._finish_writes(list(self._in_flight))

    def finish(self) -> Summary:
        """Finish the writes in flight, stop the threads, close files; return the counters.

        The target calls ``flush()`` first, which raises on a fatal error; here (also
        reached after a failure) one is only logged, so that the summary still prints.
        """
        fatal = self._wait_all(cancel=False)
        if fatal is not None:
            self.logger.error("A write failed: %s", self.client.redact(str(fatal)))
        if self._pool is not None:
            self._pool.shutdown(wait=True)
        self.rejects.close()
        self.client.close()
        self.summary.seconds = time.monotonic() - self._started
        self.summary.requests = self.client.requests_sent
        self.summary.retries = self.client.retries
        self.summary.throttled = self.client.throttle.throttled
        return self.summary

    @contextmanager
    def _load_errors(self) -> Iterator[None]:
        """Turn the API's fatal errors into a LoadError that names what failed."""
        try:
            yield
        except AuthError as error:
            raise LoadError(self.client.redact(
                f"Piriod refused the credentials ({error}); check auth_token and api_url"),
            ) from error
        except PiriodError as error:
            raise LoadError(self.client.redact(str(error))) from error

    @property
    def index(self) -> CustomerIndex:
        """Return the customer index, reading it (once per run) on first use."""
        if self._index is None:
            self._index = self._read_index()
        return self._index

    def _read_index(self) -> CustomerIndex:
        """Read every customer once, 100 a page, and index them by id and match key."""
        started, sent = time.monotonic(), self.client.requests_sent
        index = CustomerIndex(self.spec)
        index.add_all(self._reported(self.client.iter_customers({"ordering": "created"})))
        keys = "id" if self.spec.field == "id" else f"id and {self.spec.label}"
        self.logger.info("Indexed %d customers by %s in %.2f s (%d requests)", len(index),
                         keys, time.monotonic() - started, self.client.requests_sent - sent)
        return index

    def _reported(self, customers: Iterator[dict]) -> Iterator[dict]:
        """Pass the index's customers through, saying every so often how many were read."""
        started = last = time.monotonic()
        for count, customer in enumerate(customers, 1):
            yield customer
            if time.monotonic() - last >= PROGRESS_EVERY_SECONDS:
                last = time.monotonic()
                self.logger.info("Indexing: %d customers read (%.0f/s, %d requests, %d "
                                 "retries)", count, count / (last - started),
                                 self.client.requests_sent, self.client.retries)

    def _report_progress(self) -> None:
        """Log the counters so far, at most every PROGRESS_EVERY_SECONDS."""
        now = time.monotonic()
        if now - self._last_report < PROGRESS_EVERY_SECONDS:
            return
        self._last_report, done = now, self.summary
        self.logger.info(
            "Progress: %d records (%.0f records/s): %d created, %d updated, %d unchanged, "
            "%d rejected; %d requests, %d retries, %d throttled", done.records,
            done.records / (now - self._started), done.created, done.updated, done.unchanged,
            done.rejected, self.client.requests_sent, self.client.retries,
            self.client.throttle.throttled)

    # -- planning ------------------------------------------------------------------------

    def _prepare(self, record: dict) -> Item | None:
        """Validate a record and find its key; dead-letter it if either fails."""
        payload = to_payload(record)
        key = record_key(record, self.spec)
        errors = self._validator.errors(payload)
        if errors:
            self._reject_records([record], key, Rejection(
                "invalid", "; ".join(errors), error=errors))
            return None
        if key is None:
            wanted = "an id" if self.spec.field == "id" else f"an id or a {self.spec.label}"
            self._reject_records([record], None, Rejection(
                "missing_key", f"record has neither {wanted}: it cannot be matched, and "
                "creating it would duplicate it on every re-run (set match_field)"))
            return None
        return Item(record, key, payload)

    def _plan(self, items: list[Item]) -> list[Action]:
        """Merge records by key, match each key to a customer, and diff."""
        by_key: dict[Key, list[Item]] = {}
        for item in items:
            by_key.setdefault(item.key, []).append(item)
        by_target: dict[str, Action] = {}
        for key, group in by_key.items():
            payload = reduce(merge_payloads, (item.payload for item in group))
            found = self._match_settled(key, group, payload)
            if found is False:
                continue
            target = f"id:{found['id']}" if found else f"new:{key}"
            if target in by_target:  # two keys, one customer: one write, later wins
                earlier = by_target[target]
                earlier.items += group
                earlier.payload = merge_payloads(earlier.payload, payload)
            else:
                by_target[target] = Action("", key, list(group), payload, found or None)
        return [action for action in map(self._decide, by_target.values()) if action]

    def _match_settled(self, key: Key, group: list[Item],
                       payload: dict) -> dict | bool | None:
        """Match a key once no write in flight holds it, its match key or its customer."""
        self._settle(key_claim(key))
        value = self.spec.value_of(payload) if self.spec.field != "id" else None
        if value is not None:
            self._settle(key_claim((self.spec.label, value)))
        while True:
            found = self._match(key, group, payload)
            if not found or not self._settle(id_claim(found["id"])):
                return found
            # That customer was being written: match again against what was written.

    def _match(self, key: Key, group: list[Item], payload: dict) -> dict | bool | None:
        """Return the customer a key matches, None for no match, False if rejected."""
        if key[0] == "id":
            found = self.index.get(key[1]) or self._fetch(key[1])
            if found is None:
                self._reject_records([item.record for item in group], key, Rejection(
                    "not_found", f"no customer has id {key[1]} (deleted?)", status=404))
                return False
            return found
        matches = self.index.find(key[1])
        if len(matches) > 1:
            ids = ", ".join(customer["id"] for customer in matches)
            self._reject_records([item.record for item in group], key, Rejection(
                "ambiguous_match", f"{len(matches)} customers have {key[0]}={key[1]!r} "
                f"({ids}); refusing to guess which one to update"))
            return False
        return matches[0] if matches else None

    def _fetch(self, customer_id: str) -> dict | None:
        """Read a customer the index does not know (created after the index was read)."""
        customer = self.client.get_customer(customer_id)
        return self.index.add(customer) if customer else None

    def _decide(self, action: Action) -> Action | None:
        """Set the action's kind from the mode and the diff."""
        if action.current is None:
            if self.mode == "update_only":
                self._reject_records([item.record for item in action.items], action.key,
                                     Rejection("not_found", f"no customer has {action.key[0]}="
                                               f"{action.key[1]!r} and mode is update_only"))
                return None
            action.kind = "create"
        elif self.mode == "create_only":
            action.kind = "skip"
        else:
            action.changes = changes_for(action.current, action.payload)
            action.kind = "update" if action.changes else "unchanged"
        return action

    # -- writing -------------------------------------------------------------------------

    def _write_all(self, actions: list[Action]) -> None:
        """Count what needs no write, and start the writes on the worker threads."""
        for action in actions:
            if action.kind == "unchanged":
                self.summary.unchanged += 1
            elif action.kind == "skip":
                self.summary.skipped += 1
            elif self.dry_run:
                self._pretend(action)
            else:
                self._submit(action)

    def _submit(self, action: Action) -> None:
        """Start one write, holding its claims until its outcome is recorded."""
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.max_workers, thread_name_prefix="piriod")
        future = self._pool.submit(self._write, action)
        self._in_flight[future] = action
        for claim in action.claims(self.spec):
            # Two writes of one batch may share a claim (a record patching its customer's
            # tax_id to another record's new key): a later record waits for both.
            self._claims.setdefault(claim, set()).add(future)

    def _settle(self, claim: str) -> bool:
        """Wait for the writes holding ``claim``, if any, and record them; True if any."""
        futures = self._claims.get(claim)
        if not futures:
            return False
        self._finish_writes(list(futures))
        return True

    def _finish_writes(self, futures: list[Future]) -> None:
        """Wait for writes and record them; on a fatal error stop the rest and re-raise."""
        wait(futures, return_when=FIRST_EXCEPTION)
        fatal = self._collect([future for future in futures if future.done()])
        if fatal is not None:
            self._wait_all(cancel=True)
            raise fatal

    def _wait_all(self, *, cancel: bool) -> BaseException | None:
        """Wait for every write in flight (cancelling those not started) and record them."""
        futures = list(self._in_flight)
        if cancel:
            for future in futures:
                future.cancel()
        wait(futures)
        return self._collect(futures)

    def _collect(self, futures: list[Future]) -> BaseException | None:
        """Record finished writes and release their claims; return the first fatal error."""
        fatal = None
        for future in futures:
            action = self._in_flight.pop(future, None)
            if action is None:
                continue  # recorded already
            for claim in action.claims(self.spec):
                holders = self._claims.get(claim, set())
                holders.discard(future)
                if not holders:
                    self._claims.pop(claim, None)
            if future.cancelled():
                continue
            if future.exception() is not None:
                fatal = fatal or future.exception()
                continue
            self._record(action, future.result())
        return fatal

    def _write(self, action: Action) -> dict | Rejection:
        """Create or patch one customer; return it, or the API's reason for refusing."""
        try:
            if action.kind == "create":
                return self._create(action)
            return self.client.update_customer(action.current["id"], action.changes)
        except AuthError:
            raise
        except ApiError as error:
            if error.status == 404 and action.kind == "update":
                return Rejection("not_found", f"customer {action.current['id']} no longer "
                                 "exists (deleted?)", error.status, error.body)
            return Rejection("api_rejected", str(error), error.status, error.body)

    def _create(self, action: Action) -> dict:
        """POST a customer; when an attempt's outcome is unknown, look before re-posting."""
        body, last = creation_body(action.payload), None
        for attempt in range(self.client.max_retries + 1):
            if attempt:
                self.client.backoff(attempt - 1)
            try:
                return self.client.create_customer(body)
            except OutcomeUnknownError as error:
                last = error
                self.logger.warning("Create of %s=%r may have happened (%s): looking it up "
                                    "before posting again", *action.key, error)
                if error.timed_out:  # the server may still be committing it: give it time
                    time.sleep(self.client.timeout)
                found = self._find_remote(action.key, body)
                if found is not None:
                    return self._reconcile(found, action)
        raise RetriesExhaustedError(f"creating the customer with {action.key[0]}="
                                    f"{action.key[1]!r} failed after "
                                    f"{self.client.max_retries + 1} attempts; last: {last}")

    def _find_remote(self, key: Key, body: dict) -> dict | None:
        """Find a customer by key in the API, verifying every candidate.

        The ``tax_id``/``email`` list filters are undocumented: a server may ignore them
        and return everything. So each result is checked against the key, and all pages
        are read: one small page when the filter works, the whole list when it does not.
        ``metadata.<key>`` has no filter at all, so it is always the whole list.
        """
        field_name = self.spec.field
        params = {}
        if key[0] == self.spec.label and field_name in FILTERABLE and body.get(field_name):
            params[field_name] = body[field_name]
        matches = [customer for customer in self.client.iter_customers(params)
                   if self.spec.value_of(customer_shape(customer)) == key[1]]
        if len(matches) > 1:
            self.logger.warning("%d customers now have %s=%r; using %s", len(matches), *key,
                                matches[0]["id"])
        return matches[0] if matches else None

    def _reconcile(self, found: dict, action: Action) -> dict:
        """Make a customer found after an unknown outcome hold the record's values."""
        changes = changes_for(customer_shape(found), action.payload)
        return self.client.update_customer(found["id"], changes) if changes else found

    def _record(self, action: Action, outcome: dict | Rejection) -> None:
        """Count a finished write, update the index, or dead-letter its records."""
        if isinstance(outcome, Rejection):
            self._reject_records([item.record for item in action.items], action.key, outcome)
            return
        self.index.add(outcome)
        if action.kind == "create":
            self.summary.created += 1
        else:
            self.summary.updated += 1
        self.logger.debug("%sd customer %s (%s=%r)", action.kind, outcome["id"], *action.key)

    def _pretend(self, action: Action) -> None:
        """Dry run: count the write and update the index as if it had happened."""
        if action.kind == "create":
            self._dry_run_ids += 1
            self.summary.created += 1
            self.index.add({**creation_body(action.payload),
                            "id": f"dry-run-{self._dry_run_ids}"})
            self.logger.info("Dry run: would create %s=%r", *action.key)
        else:
            self.summary.updated += 1
            self.index.add({**action.current, **action.changes})
            self.logger.info("Dry run: would update %s with %s", action.current["id"],
                             sorted(action.changes))

    def _reject_records(self, records: list[dict], key: Key | None,
                        rejection: Rejection) -> None:
        """Dead-letter records with their key and reason, and count them."""
        for record in records:
            self.rejects.write(record=record, key=key, reason=rejection.reason,
                               message=rejection.message, status=rejection.status,
                               error=rejection.error, dry_run=self.dry_run)
        self.summary.rejected += len(records)
        self.logger.warning("Rejected %d record(s) with %s: %s (%s)", len(records),
                            f"{key[0]}={key[1]!r}" if key else "no key", rejection.reason,
                            self.client.redact(rejection.message))
