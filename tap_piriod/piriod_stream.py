"""``PiriodStream``: a Piriod list, read incrementally by ``updated``; every stream's base.

A stream of the tap (``tap_piriod.streams``) names its resource (``name``, ``path``, the
schema, the keys, the noun its log lines use) and may add query parameters; everything
below is shared. Each run emits every record whose ``updated`` is at or after the
bookmark, and how it never misses one is the same for every Piriod list:

* Pages are requested in *creation* order (``ordering=created,id``), not update order.
  With page-number pagination, a record updated during the run would leave its place
  in an update-ordered list and shift the rest one slot back: a record would slip
  between two pages unseen. In creation order an update moves nothing; new records can
  only push records forward, which re-reads one (harmless) instead of skipping one.
* The server is asked to filter (``updated__gte``), and every record is checked again
  here, comparing instants, because a server may ignore the filter (or refuse it with a
  400 naming it, in which case we ask again without the parameters it named).
* ``updated`` values are rewritten in one UTC format, so that the SDK's bookmark (the
  largest value seen, compared as text) is the newest instant seen.
* Each incremental run starts ``lookback_window`` seconds before the bookmark: Piriod
  stamps ``updated`` when a row is saved, not when its transaction commits, so a long
  transaction can commit rows stamped before a bookmark that a concurrent run already
  moved past. Records the previous run delivered inside that window (same id, same
  ``updated``) are not emitted again (``tap_piriod.delivered``).
* In FULL_TABLE mode records carry a table version, and ACTIVATE_VERSION is emitted
  *after the last record of a complete read* (the SDK would emit it before the first):
  a loader deletes the rows the read did not bring, so a run that dies halfway must not
  send it. Before it, the records the previous complete read had and this one lacks are
  fetched by id (``tap_piriod.complete_read``): only those the API answers 404 for are
  deleted.
* The stream declares itself unsorted: the bookmark only advances when the whole stream
  has been read, and the SDK caps it at the moment the run started (its "signpost"), so a
  change made during the run is picked up by the next one. "The moment the run started"
  is taken from the server's clock (its ``Date`` header) when that is earlier than ours:
  ``updated`` is stamped by the server, and a client clock running ahead would otherwise
  let the bookmark jump over changes made while the run was reading.

The HTTP side (retries, pacing, pages read ``max_workers`` at a time) is ``piriod/``'s:
this module is the Singer glue around it.
"""

from __future__ import annotations

import re
import time
import typing as t
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from email.utils import parsedate_to_datetime

from singer_sdk import Stream
from singer_sdk.exceptions import FatalAPIError

from piriod.client import PiriodClient
from piriod.errors import ParametersRefusedError, PiriodError, StoppedError
from piriod.listing import Listing
from piriod.pages import Page
from piriod.settings import setting
from tap_piriod.attributes import UnknownAttributeLog
from tap_piriod.batches import FastBatches
from tap_piriod.complete_read import STATE_KEY as COMPLETE_READ
from tap_piriod.complete_read import ReadIds
from tap_piriod.delivered import STATE_KEY, DeliveredSet
from tap_piriod.fast_records import FastRecordMessages

if t.TYPE_CHECKING:
    from collections.abc import Iterator

    from singer_sdk.helpers.types import Context

    from tap_piriod.tap import TapPiriod

PROGRESS_EVERY_SECONDS = 10.0
FRACTION = re.compile(r"(\.\d+)")
# Parameters the tap adds that the documentation does not promise; the API may refuse them.
OPTIONAL_PARAMETERS = ("ordering", "updated__gte")


def utc_text(value: str | datetime) -> str:
    """Return an ISO 8601 instant as fixed-width UTC text, which sorts like the instant."""
    if value.__class__ is str and len(value) == 27 and value[26] == "Z":
        # The API's usual form, ``2025-01-02T03:04:05.123456Z``: already the answer but
        # for the suffix, if it parses and reads back unchanged (half the cost of below).
        head = value[:26]
        try:
            if datetime.fromisoformat(head).isoformat(timespec="microseconds") == head:
                return head + "+00:00"
        except ValueError:
            pass  # let the general case below raise as it always has
    moment = value if isinstance(value, datetime) else parse_instant(value)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc).isoformat(timespec="microseconds")


def parse_instant(text: str) -> datetime:
    """Parse ISO 8601 text, ``Z`` and fractions of any length included (3.10 takes 3 or 6)."""
    text = text.strip().replace("Z", "+00:00").replace("z", "+00:00")
    text = FRACTION.sub(lambda match: (match[1] + "000000")[:7], text)
    return datetime.fromisoformat(text)


class PiriodStream(FastRecordMessages, FastBatches, UnknownAttributeLog, Stream):
    """A Piriod list at ``path``, incremental by ``updated`` (see the module docstring)."""

    path: t.ClassVar[str]  # the list's API path, e.g. ``/customers/``
    noun: t.ClassVar[str]  # one record, in log lines and errors, e.g. ``customer``
    replication_key = "updated"
    is_sorted = False
    records_are_json = True  # piriod.client parses with Decimals and refuses NaN/Infinity

    def __init__(self, tap: TapPiriod, *args: t.Any, **kwargs: t.Any) -> None:
        super().__init__(tap, *args, **kwargs)
        self.piriod_tap = tap  # the SDK's ``_tap`` is private and typed as any Tap
        self._since: str | None = None
        self._progress = {"emitted": 0, "skipped": 0, "delivered": 0, "pages": 0}
        self._started = self._last_report = time.monotonic()
        self._signpost: str | None = None
        self._client: PiriodClient | None = None
        self._bookmark: str | None = None  # the state's, when this run started
        self._newest = ""  # the newest ``updated`` emitted by this run
        self._delivered: DeliveredSet | None = None
        self._pending_version: int | None = None
        self._query: dict[str, t.Any] = {}  # this run's query, less what the API refused
        self._read_ids: ReadIds | None = None  # a FULL_TABLE read's ids (reconciles only)

    @property
    def client(self) -> PiriodClient:
        """Return the run's Piriod client (built on first use, from validated settings)."""
        if self._client is None:
            self._client = self.piriod_tap.piriod_client()
        return self._client

    def query(self) -> dict[str, t.Any]:
        """Ask for big pages in creation order, filtered by the bookmark if there is one."""
        params: dict[str, t.Any] = {"page_size": setting(self.config, "page_size", 100),
                                    "ordering": "created,id"}
        if self._since:
            params["updated__gte"] = self._since
        return params

    def get_records(self, context: Context | None) -> t.Iterable[dict[str, t.Any]]:
        """Fix this run's window, read every page, then leave what the next run needs."""
        self._start_window(context)
        self._query = self.query()
        listing = Listing(lambda: self._pages(self._query),
                          lambda: self.client.count(self._query, path=self.path),
                          logger=self.logger)
        reconciling = self._pending_version is not None and not self._incremental
        self._read_ids = ReadIds() if reconciling else None
        found: list[str] = []
        try:
            for page in listing:
                yield from self._records_of(page)
            if reconciling and listing.settled:
                found = yield from self._records_the_read_lacks()
        except StoppedError:
            self.piriod_tap.check_stop(self._progress["emitted"])
            raise
        except PiriodError as error:
            raise FatalAPIError(self.client.redact(str(error))) from error
        self._report_progress(final=True)
        self._report_listing(listing)
        if self._incremental:
            self._remember_window(listing.settled)
        elif reconciling and listing.settled:  # a complete read
            assert self._pending_version is not None and self._read_ids is not None
            super()._write_activate_version_message(self._pending_version)
            self.stream_state[COMPLETE_READ] = self._read_ids.to_state(found)

    def _records_the_read_lacks(self) -> t.Generator[dict, None, list[str]]:
        """Fetch by id each record the previous complete read had and this one lacks.

        Yields those Piriod still has (200), so that ACTIVATE_VERSION deletes only the
        ones it answers 404 for; returns the ids of those yielded.
        """
        assert self._read_ids is not None
        missing = self._read_ids.missing_from(self.stream_state.get(COMPLETE_READ))
        if not missing:
            return []
        workers = max(1, int(self.config.get("max_workers") or 1))
        with ThreadPoolExecutor(workers, thread_name_prefix="piriod-recheck") as pool:
            answers = list(pool.map(self._get_one, missing))
        found = [record for record in answers if isinstance(record, dict)]
        level = self.logger.warning if found else self.logger.info
        level(f"%d {self.noun}(s) of the previous complete read were not in this one: %d "
              "still exist and are emitted (the listing moved unseen), %d are gone (404)",
              len(missing), len(found), len(missing) - len(found))
        yield from found
        return [str(record.get("id")) for record in found]

    def _get_one(self, record_id: str) -> dict | None:
        return self.client.get_one(record_id, path=self.path)

    def _report_listing(self, listing: Listing) -> None:
        """Say, in one line, what the listing did under the read and what is held back."""
        if listing.settled and listing.passes == 1:
            return
        if listing.settled:
            self.logger.warning(
                f"The {self.noun} listing moved while it was read and was read %d times "
                "(%s); the last read held still, so the %s", listing.passes, listing.churn,
                "bookmark moves" if self._incremental else "read is complete")
            return
        held = ("the bookmark stays where it was: the next run reads this window again"
                if self._incremental else
                "no ACTIVATE_VERSION is sent: the loader deletes nothing this time")
        self.logger.warning(
            f"The {self.noun} listing kept moving while it was read (%d reads: %s): every "
            f"{self.noun} read was emitted, but the read may have missed some, so %s",
            listing.passes, listing.churn, held)

    def _start_window(self, context: Context | None) -> None:
        """Set ``_since``: the bookmark less the lookback window (or start_date)."""
        self._since = None
        if not self._incremental:
            return
        start = self.get_starting_timestamp(context)
        self._bookmark = self.stream_state.get("replication_key_value")
        if start is not None:
            self._since = self._less_lookback(utc_text(start)) if self._bookmark \
                else utc_text(start)
        self._delivered = DeliveredSet(self.stream_state.get(STATE_KEY), self.logger)
        if self._bookmark and self._lookback:
            self.logger.info(f"Reading {self.noun}s updated at or after %s (the bookmark %s "
                             "less the %g s lookback window)", self._since, self._bookmark,
                             self._lookback)
        else:
            self.logger.info(f"Reading {self.noun}s updated at or after %s",
                             self._since or "the start")

    def _remember_window(self, settled: bool) -> None:
        """Keep the bookmark monotonic and store what was delivered in the next window.

        A read that never saw the listing hold still may have missed a record updated
        before the run: the bookmark then stays where it was (the window is read again).
        """
        markers = self.stream_state.get("progress_markers") or {}
        emitted = markers.get("replication_key_value")
        assert self._delivered is not None
        if not settled:
            if self._bookmark:
                markers["replication_key_value"] = self._bookmark
            else:  # no bookmark before: leave none (the SDK writes what the markers say)
                markers.pop("replication_key", None)
                markers.pop("replication_key_value", None)
            self.stream_state[STATE_KEY] = self._delivered.to_state(self._since or "")
            return
        if emitted is not None and self._bookmark and str(emitted) < str(self._bookmark):
            markers["replication_key_value"] = self._bookmark  # late commits only: keep it
        self.stream_state[STATE_KEY] = self._delivered.to_state(self._next_window_floor())

    def _next_window_floor(self) -> str:
        """Return the start of the next run's window, as far as this run can know it."""
        candidates = [value for value in (self._newest, self._signpost) if value]
        bookmark = max(min(candidates, default=""), self._bookmark or "")
        return self._less_lookback(bookmark) if bookmark else ""

    @property
    def _lookback(self) -> float:
        return float(self.config.get("lookback_window") or 0)

    def _less_lookback(self, instant: str) -> str:
        """Return the UTC text of ``lookback_window`` seconds before ``instant``."""
        return utc_text(parse_instant(instant) - timedelta(seconds=self._lookback))

    @property
    def emit_activate_version_messages(self) -> bool:
        """Emit ACTIVATE_VERSION in FULL_TABLE mode unless the setting turns it off."""
        return bool(self.config.get("emit_activate_version_messages", True))

    def _write_activate_version_message(self, full_table_version: int) -> None:
        """Hold the SDK's ACTIVATE_VERSION (sent before the records) until the read ends."""
        self._pending_version = full_table_version

    def _pages(self, query: dict[str, t.Any]) -> Iterator[Page]:
        """Yield one pass's pages; if the API refuses optional parameters, drop them.

        What the API refused stays dropped (``_query``) for the later passes and probes.
        """
        workers = int(self.config.get("max_workers") or 1)
        while True:
            try:
                yield from self.client.list_pages(query, max_workers=workers,
                                                  path=self.path)
                return
            except ParametersRefusedError as error:
                refused = error.refused & set(OPTIONAL_PARAMETERS) & set(query)
                if self._progress["pages"] or not refused:
                    raise
                self.logger.warning("The API refused %s (%s); asking again without, and "
                                    "filtering here", ", ".join(sorted(refused)), error)
                query = {key: value for key, value in query.items() if key not in refused}
                self._query = query

    def _records_of(self, page: Page) -> t.Iterator[dict]:
        """Yield a page's records, then hand them to the reader before the next page."""
        self._progress["pages"] += 1
        if self._progress["pages"] == 1:
            self._cap_signpost_by_server_clock(page)
        if self._read_ids is not None:
            for record in page.results:
                self._read_ids.add(record.get("id"))
        yield from page.results
        flush = getattr(self.piriod_tap.message_writer, "flush", None)
        if flush is not None:
            flush()
        self.piriod_tap.check_stop(self._progress["emitted"])

    def post_process(self, row: dict, context: Context | None = None) -> dict | None:
        """Normalise timestamps to UTC; drop what is older than the bookmark."""
        try:
            if not isinstance(row, dict) or not row.get("id"):
                raise ValueError("no id")
            row["updated"] = utc_text(row["updated"])
            if row.get("created"):
                row["created"] = utc_text(row["created"])
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            found = row if not isinstance(row, dict) else {
                key: row.get(key) for key in ("id", "updated", "created")}
            raise FatalAPIError(
                f"page {self._progress['pages']} held a {self.noun} the schema cannot place "
                f"({str(found)[:200]}): every {self.noun} needs an id and ISO 8601 updated/"
                "created date-times; stopping without moving the bookmark") from error
        updated = row["updated"]
        if self._since and updated < self._since:
            self._progress["skipped"] += 1  # the server ignored updated__gte
            return None
        if self._delivered is not None and self._delivered.already_delivered(row["id"],
                                                                              updated):
            self._progress["delivered"] += 1
            return None
        self._newest = max(self._newest, updated)
        self._progress["emitted"] += 1
        if self._delivered is not None and self._progress["emitted"] % 1000 == 0:
            # The window can only move up: what is below it now needs no remembering.
            self._delivered.raise_floor(self._next_window_floor())
        if time.monotonic() - self._last_report >= PROGRESS_EVERY_SECONDS:
            self._report_progress()
        return row

    def get_replication_key_signpost(self, context: Context | None = None) -> str | None:
        """Cap the bookmark at the run's start time, in the same text form as the records."""
        self._signpost = utc_text(datetime.now(timezone.utc)) if self._incremental else None
        return self._signpost

    def _cap_signpost_by_server_clock(self, page: Page) -> None:
        """Lower the signpost to the server's time of the first query, if that is earlier.

        ``Date`` has one-second resolution and is stamped after the query ran, hence the
        margin of the request's duration plus one second.
        """
        date = page.headers.get("Date") if page.headers else None
        if not (self._signpost and date):
            return
        try:
            server_start = (parsedate_to_datetime(date) - timedelta(seconds=page.elapsed)
                            - timedelta(seconds=1))
        except (TypeError, ValueError, OverflowError):
            return
        if server_start.tzinfo is None:
            return
        if utc_text(server_start) < self._signpost:
            # Always true by the one-second margin alone: only a real skew is news.
            skewed = server_start < datetime.now(timezone.utc) - timedelta(seconds=5)
            log = self.logger.info if skewed else self.logger.debug
            log("Bookmark capped at %s by the server's clock (its Date header)",
                utc_text(server_start))
            self._signpost = utc_text(server_start)
            self._write_replication_key_signpost(self.context, self._signpost)

    @property
    def _incremental(self) -> bool:
        return self.replication_method == "INCREMENTAL"

    def _report_progress(self, final: bool = False) -> None:
        now = time.monotonic()
        elapsed = max(now - self._started, 1e-9)
        done = self._progress
        client = self.client
        self.logger.info(
            f"%s {self.noun}s: %d emitted (%.0f records/s), %d pages, %d requests, %d retries, "
            "%d throttled, %d skipped as older than the window, %d as delivered before",
            "Finished" if final else "Progress", done["emitted"], done["emitted"] / elapsed,
            done["pages"], client.requests_sent, client.retries, client.throttle.throttled,
            done["skipped"], done["delivered"])
        self._last_report = now
