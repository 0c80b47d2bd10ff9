"""Writing: customers created and patched on worker threads, one write per key and customer.

``Writes`` runs each action's request(s) on up to ``max_workers`` threads over the
client's pooled connections. Each write in flight *claims* the keys of its records, the
match key its payload sets and its customer's id; planning a record whose key or
customer is claimed first waits for that write and records its outcome, so two threads
never race two POSTs for one key nor two PATCHes for one customer, and the later record
is matched and diffed against what the earlier write wrote.

Outcomes are recorded (through the ``record`` callback: index, counters, dead letters)
on the thread that calls ``Writes``, never on a worker thread: workers only send
requests and return what came back. ``DryRun`` has the same interface and records every
action at once as if the API had carried it out.

A POST whose outcome is unknown (a 5xx, a timeout or a dropped connection after it was
sent) may have been committed. ``CustomerWriter`` then looks the key up before posting
again, and makes a customer it finds hold the record's values.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait

from typing_extensions import assert_never

from piriod.client import PiriodClient
from piriod.errors import (
    ApiError,
    AuthError,
    OutcomeUnknownError,
    RetriesExhaustedError,
    StoppedError,
)
from target_piriod.actions import Action, Kind, Rejection
from target_piriod.diff import changes_for, creation_body, customer_shape
from target_piriod.keys import FILTERABLE, Key, KeySpec

Outcome = dict | Rejection  # the customer as the API returned it, or why it was refused
Recorder = Callable[[Action, Outcome], None]


def key_claim(key: Key) -> str:
    """Return the claim of a match key (``key:tax_id:76.1-K``)."""
    return f"key:{key[0]}:{key[1]}"


def id_claim(customer_id: str) -> str:
    """Return the claim of a customer (``id:cus_1``)."""
    return f"id:{customer_id}"


def claims(action: Action, spec: KeySpec) -> set[str]:
    """Return what a write must hold alone while in flight (see the module doc)."""
    claimed = {key_claim(item.key) for item in action.items}
    value = spec.match_value(action.payload)
    if value is not None:
        claimed.add(key_claim((spec.label, value)))
    if action.current is not None:
        claimed.add(id_claim(action.current["id"]))
    return claimed


class CustomerWriter:
    """Sends one action's requests: a PATCH, or a POST that looks before posting again."""

    def __init__(self, client: PiriodClient, spec: KeySpec, logger: logging.Logger) -> None:
        self.client = client
        self.spec = spec
        self.logger = logger
        self._stopping = threading.Event()

    def stop(self) -> None:
        """Make a wait for a POST that timed out give up (a signal); only sets an event."""
        self._stopping.set()

    def write(self, action: Action) -> Outcome:
        """Create or patch one customer; return it, or the API's reason for refusing."""
        try:
            match action.kind:
                case Kind.CREATE:
                    return self._create(action)
                case Kind.UPDATE:
                    return self.client.update_customer(action.customer_id, action.changes)
                case Kind.UNCHANGED | Kind.SKIP:  # the Loader writes neither
                    raise AssertionError(f"no write for a {action.kind.value} action")
                case _:
                    assert_never(action.kind)
        except AuthError:
            raise
        except ApiError as error:
            if error.status == 404 and action.kind is Kind.UPDATE:
                return Rejection("not_found", f"customer {action.customer_id} no longer "
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
                # The server may still be committing a POST that timed out: give it time.
                if error.timed_out and self._stopping.wait(self.client.timeout):
                    raise StoppedError("stopped by a signal while waiting on a POST that "
                                       "timed out") from error
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
        # A listing read again while it moves: a customer it missed would be posted twice.
        matches = [customer for page in self.client.listing(params) for customer in page.results
                   if self.spec.value_of(customer_shape(customer)) == key[1]]
        if len(matches) > 1:
            self.logger.warning("%d customers now have %s=%r; using %s", len(matches), *key,
                                matches[0]["id"])
        return matches[0] if matches else None

    def _reconcile(self, found: dict, action: Action) -> dict:
        """Make a customer found after an unknown outcome hold the record's values."""
        changes = changes_for(customer_shape(found), action.payload)
        return self.client.update_customer(found["id"], changes) if changes else found


class Writes:
    """The writes in flight: worker threads, and the claims each write holds."""

    def __init__(self, writer: CustomerWriter, max_workers: int, record: Recorder) -> None:
        self.writer = writer
        self.max_workers = max_workers
        self._record = record
        self._pool: ThreadPoolExecutor | None = None
        self._in_flight: dict[Future, Action] = {}  # submitted, outcome not yet recorded
        self._claims: dict[str, set[Future]] = {}  # key_claim/id_claim -> writes holding it

    def submit(self, action: Action) -> None:
        """Start one write, holding its claims until its outcome is recorded."""
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.max_workers, thread_name_prefix="piriod")
        future = self._pool.submit(self.writer.write, action)
        self._in_flight[future] = action
        for claim in claims(action, self.writer.spec):
            # Two writes of one batch may share a claim (a record patching its customer's
            # tax_id to another record's new key): a later record waits for both.
            self._claims.setdefault(claim, set()).add(future)

    def started(self) -> list[Future]:
        """Return the writes started and not yet recorded."""
        return list(self._in_flight)

    def wait_for_key(self, key: Key) -> None:
        """Wait for the writes holding a match key, if any, and record them."""
        self._settle(key_claim(key))

    def wait_for_customer(self, customer_id: str) -> bool:
        """Wait for the writes holding a customer, if any, and record them; True if any."""
        return self._settle(id_claim(customer_id))

    def _settle(self, claim: str) -> bool:
        futures = self._claims.get(claim)
        if not futures:
            return False
        self.finish(list(futures))
        return True

    def finish(self, futures: list[Future]) -> None:
        """Wait for writes and record them; on a fatal error stop the rest and re-raise.

        After a stop (``StoppedError``) the rest is left to ``halt()``, which waits for
        it with a bound.
        """
        wait(futures, return_when=FIRST_EXCEPTION)
        fatal = self._collect([future for future in futures if future.done()])
        if fatal is not None:
            if not isinstance(fatal, StoppedError):
                self._wait_all(cancel=True)
            raise fatal

    def stop(self) -> None:
        """Make the writes give up their own waits (the Loader stops the client)."""
        self.writer.stop()

    def halt(self, grace: float) -> int:
        """After ``stop()``: wait ``grace`` seconds at most; return how many were given up.

        The writes not started are cancelled, those that finish are recorded. A write
        given up, cancelled or stopped is never recorded, so its records stay
        unhandled: no STATE covers them, and a re-run writes them.
        """
        futures = list(self._in_flight)
        for future in futures:
            future.cancel()
        done, running = wait(futures, timeout=grace)
        self._collect(list(done))  # the errors of stopped writes: nothing to record
        for future in running:
            self._in_flight.pop(future, None)
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
        return len(running)

    def close(self) -> BaseException | None:
        """Wait for every write, record it, stop the threads; return a fatal error, if any."""
        fatal = self._wait_all(cancel=False)
        if self._pool is not None:
            self._pool.shutdown(wait=True)
        return fatal

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
            for claim in claims(action, self.writer.spec):
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


class DryRun:
    """Writes nothing: records each action at once as if the API had carried it out."""

    def __init__(self, record: Recorder, logger: logging.Logger) -> None:
        self._record = record
        self.logger = logger
        self._created = 0

    def submit(self, action: Action) -> None:
        """Record the customer the write would have produced."""
        match action.kind:
            case Kind.CREATE:
                self._created += 1
                self.logger.info("Dry run: would create %s=%r", *action.key)
                self._record(action, {**creation_body(action.payload),
                                      "id": f"dry-run-{self._created}"})
            case Kind.UPDATE:
                self.logger.info("Dry run: would update %s with %s", action.customer_id,
                                 sorted(action.changes))
                self._record(action, {**(action.current or {}), **action.changes})
            case Kind.UNCHANGED | Kind.SKIP:  # the Loader submits neither
                raise AssertionError(f"no write for a {action.kind.value} action")
            case _:
                assert_never(action.kind)

    def started(self) -> list[Future]:
        """Return no writes: none is ever in flight."""
        return []

    def wait_for_key(self, key: Key) -> None:
        """Return at once: nothing is in flight."""

    def wait_for_customer(self, customer_id: str) -> bool:
        """Return False: nothing is in flight."""
        return False

    def finish(self, futures: list[Future]) -> None:
        """Return at once: nothing is in flight."""

    def stop(self) -> None:
        """Return at once: nothing is ever sent."""

    def halt(self, grace: float) -> int:
        """Return 0: no write is ever in flight."""
        return 0

    def close(self) -> BaseException | None:
        """Return no error: nothing was in flight."""
        return None
