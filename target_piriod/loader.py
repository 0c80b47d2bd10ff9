"""The upsert engine: plan a batch (validate, key, merge, match, diff), then write it.

One ``Loader`` lives for the whole run (owned by the target, shared by its sinks): it
holds the HTTP client, the customer index read once at the first batch, the writer
threads, the dead-letter file and the counters of the summary line.

A batch is planned in the calling thread and only then written, so that:

* records with the same key are merged first (the later values win) and every key and
  every customer appears in exactly one write: two threads can never race two POSTs
  for one key, nor two PATCHes for one customer;
* ``load()`` returns only once every write of the batch is done or dead-lettered,
  which is what lets the SDK emit STATE after a drain without ever getting ahead of
  unwritten records.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
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
        self._started = time.monotonic()
        self._dry_run_ids = 0

    # -- the run -------------------------------------------------------------------------

    def load(self, records: Iterable[dict]) -> int:
        """Write one batch; return how many records were merged into another."""
        records = list(records)
        self.summary.records += len(records)
        try:
            items = [item for item in map(self._prepare, records) if item is not None]
            actions = self._plan(items)
            self._write_all(actions)
        except AuthError as error:
            raise LoadError(self.client.redact(
                f"Piriod refused the credentials ({error}); check auth_token and api_url"),
            ) from error
        except PiriodError as error:
            raise LoadError(self.client.redact(str(error))) from error
        merged = sum(len(action.items) - 1 for action in actions)
        self.summary.merged += merged
        return merged

    def finish(self) -> Summary:
        """Stop the threads, close files, and return the final counters."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
        self.rejects.close()
        self.client.close()
        self.summary.seconds = time.monotonic() - self._started
        self.summary.requests = self.client.requests_sent
        self.summary.retries = self.client.retries
        self.summary.throttled = self.client.throttle.throttled
        return self.summary

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
        index.add_all(self.client.iter_customers({"ordering": "created"}))
        keys = "id" if self.spec.field == "id" else f"id and {self.spec.label}"
        self.logger.info("Indexed %d customers by %s in %.2f s (%d requests)", len(index),
                         keys, time.monotonic() - started, self.client.requests_sent - sent)
        return index

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
            found = self._match(key, group, payload)
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
        """Run the batch's writes on the worker threads; return when all are done."""
        writes = []
        for action in actions:
            if action.kind == "unchanged":
                self.summary.unchanged += 1
            elif action.kind == "skip":
                self.summary.skipped += 1
            elif self.dry_run:
                self._pretend(action)
            else:
                writes.append(action)
        if writes:
            self._run_on_pool(writes)

    def _run_on_pool(self, writes: list[Action]) -> None:
        """Submit the writes; on a fatal error cancel what has not started and re-raise."""
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.max_workers, thread_name_prefix="piriod")
        futures: dict[Future, Action] = {self._pool.submit(self._write, a): a for a in writes}
        _done, pending = wait(futures, return_when=FIRST_EXCEPTION)
        for future in pending:
            future.cancel()
        wait(pending)  # writes already running finish, so their outcome is recorded
        fatal = None
        for future, action in futures.items():
            if future.cancelled():
                continue
            if future.exception() is not None:
                fatal = fatal or future.exception()
                continue
            self._record(action, future.result())
        if fatal is not None:
            raise fatal

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
