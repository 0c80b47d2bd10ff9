"""The customers planning matches against: the whole account's index, or key lookups.

Reading the index (``target_piriod.index``) costs one request per 100 customers of the
account whatever the load carries: 10 edited rows into a 1,000,000-customer account
would cost 10,000 GETs before the first write. So a small load looks its keys up one by
one instead:

* an ``id`` by retrieve (``GET /customers/{id}/``);
* a ``tax_id`` or ``email`` (``match_field``) by the list filter (``?tax_id=...``), once
  per spelling the records use (as sent, and normalised: trimmed, emails lower-cased),
  every page of the answer. The filter is exact: a tax_id no spelling finds is taken to
  be no customer's (DRF trims what the API is sent; only a value stored with spaces
  around it, written some other way, would be missed). Emails match case-blind, so an
  email no spelling finds may still be a customer's in other letter case: such a miss
  reads the index (a hit is a customer, and is kept);
* ``metadata.<key>`` has no filter: a batch with such a key reads the index.

The rule, decided on each batch until the index is read (then it is kept for the run):
the batch's keys are looked up when

1. the batch is not full (fewer than ``batch_size_rows`` records, 500 by default): the
   target sees records a batch at a time, and a first batch that is not full means the
   whole load is that small (the SDK drains a sink early only at the end of the input,
   or after records waited 5 minutes); a full batch may be the first of many, so it
   reads the index;
2. every key of the batch can be looked up (an ``id``, or a filterable ``match_field``);
3. the account's size is known (the ``count`` of the index's first page, read the
   first time: if the index wins, its read goes on from there, so deciding costs the
   index path nothing), and the lookups the run has sent, that page included, plus those the
   batch needs (one per new id, one per new spelling of a key value) stay below the
   pages the index costs (``count / 100``). Later batches spend from the same budget:
   a load that trickles in small batches reads the index once lookups would have cost
   as much, so the worst case is about twice the index read, never more.

Trust nothing. A retrieved customer must have the id asked for; each customer a filter
returns must hold the key (normalised as ``target_piriod.keys`` does). A server that
ignores the filter answers the unfiltered list: customers that do not hold the key, or
a ``count`` as large as the account's. That, or a 400 refusing the parameter, makes the
run read the index and use it for the rest of the run (logged as a warning).

The index is read as a ``piriod.listing.Listing``: while customers are deleted or
committed late in the middle of the creation order, a page-numbered read can miss a
customer, and a missed customer would be created a second time. So the read is repeated
until one pass holds still (at most ``MAX_PASSES``). If none does, the index is *moved*
and not trusted to say "no such customer": before planning a create, the key is looked
up (``?tax_id=``/``?email=``, the filter checks above; a missing id is retrieved as
always); a key with no filter, or a server that ignores filters, makes the run read the
listing once more (logged), and if that read moves too, a key it lacks is refused
(``unverified_match``: a re-run loads it) rather than created unverified.

Lookups run ``max_workers`` at a time, before the batch is planned, and their answers
go into the run's ``CustomerIndex`` on the calling thread, with no write recorded
between a lookup's request and its answer going in: so a later batch matches what an
earlier one looked up, created and patched, and the claims of ``target_piriod.write``
still decide everything: planning waits for any write in flight on a key or customer
(``wait_for_key``/``wait_for_customer``), whose recorded outcome then replaces what a
lookup found. A lookup adds only customers the index does not hold yet: like the index
read, what the run already knows (looked up, or written by the run, dry runs included)
is not replaced by a later read.
"""

from __future__ import annotations

import itertools
import logging
import math
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from piriod.client import PAGE_SIZE, PiriodClient
from piriod.errors import ParametersRefusedError
from piriod.listing import Listing
from piriod.pages import Page
from target_piriod.diff import customer_shape
from target_piriod.index import CustomerIndex
from target_piriod.keys import FILTERABLE, KeySpec, record_key
from target_piriod.plan import UnverifiedMatch

INDEX_QUERY = {"ordering": "created"}
Progress = Callable[[Iterator[dict]], Iterator[dict]]  # Report.indexing


class KeyLookups:
    """Answers planning's ``customer``/``customers_with`` from the index or by lookups."""

    def __init__(self, client: PiriodClient, spec: KeySpec, logger: logging.Logger, *,
                 max_workers: int, full_batch: int, progress: Progress) -> None:
        self.client = client
        self.spec = spec
        self.logger = logger
        self.max_workers = max(1, max_workers)
        self.full_batch = max(1, full_batch)
        self.progress = progress
        self.index = CustomerIndex(spec)  # one object for the run: filled, never replaced
        self.mode: str | None = None  # "lookup" or "index" once a batch decided
        self.account: int | None = None  # the account's customers, from the index's page 1
        self.sent = 0  # requests spent on lookups, that page included
        self.look_up_keys = True  # False: every batch reads the index (tests compare both)
        self._listing: tuple[Page, Iterator[Page]] | None = None  # the index's read, begun
        self._ids: set[str] = set()  # ids looked up (found or not)
        self._values: set[str] = set()  # normalised key values looked up
        self.moved = False  # the index read never saw the listing hold still
        self._read_again = False  # the listing was read once more to verify creates
        self._unverifiable = False  # ... and it moved again: misses cannot be trusted

    # -- per batch ---------------------------------------------------------------------

    def prepare(self, records: list[dict]) -> None:
        """Decide how this batch is matched; look its keys up if that is the way."""
        if self.mode == "index" or not records:
            return
        ids, spellings, unfilterable = self._keys(records)
        ids = {cid for cid in ids if cid not in self._ids and self.index.get(cid) is None}
        spellings = {value: spelled for value, spelled in spellings.items()
                     if value not in self._values}
        cost = len(ids) + sum(len(spelled) for spelled in spellings.values())
        reason = self._index_reason(len(records), unfilterable, cost)
        if reason is not None:
            self._use_index(reason)
            return
        if self.mode is None:
            self.logger.info(
                "Looking %d key(s) up (%d requests) instead of reading the index of %d "
                "customers (%d pages)", len(ids) + len(spellings), cost, self.account,
                self._pages())
        self.mode = "lookup"
        self._look_up(ids, spellings)

    def _keys(self, records: list[dict]) -> tuple[set[str], dict[str, set[str]], bool]:
        """Return a batch's ids, key values (with their spellings), and unfilterable.

        ``unfilterable``: a key cannot be looked up (``metadata.<key>``).
        """
        ids: set[str] = set()
        spellings: dict[str, set[str]] = {}
        unfilterable = False
        for record in records:
            key = record_key(record, self.spec) if isinstance(record, dict) else None
            if key is None:
                continue  # refused by planning: nothing to look up
            if not sendable(key[1]):
                continue  # no customer's: planning refuses it (invalid, or not_found)
            if key[0] == "id":
                ids.add(key[1])
            elif self.spec.field not in FILTERABLE or self.spec.metadata_key:
                unfilterable = True
            else:
                spelled = spellings.setdefault(key[1], {key[1]})
                raw = record.get(self.spec.field)
                if isinstance(raw, str) and raw and sendable(raw):
                    spelled.add(raw)  # as the records (and customers the run made) spell it
        return ids, spellings, unfilterable

    def _index_reason(self, records: int, unfilterable: bool, cost: int) -> str | None:
        """Return why this batch must use the index, or None to look its keys up."""
        if not self.look_up_keys:
            return "key lookups are switched off"
        if records >= self.full_batch:
            return f"a full batch ({records} records): the load may be large"
        if unfilterable:
            return f"{self.spec.label} has no list filter to look it up by"
        if self.account is None:
            listing = self.client.list_pages(INDEX_QUERY)
            first = next(listing)
            self.sent += 1
            count = first.payload.get("count") if isinstance(first.payload, dict) else None
            if type(count) is not int or count < 0:
                self._listing = (first, listing)
                return "the API does not say how many customers the account has"
            self.account = count
            if self.sent + cost >= self._pages():
                self._listing = (first, listing)  # the index's read goes on from page 2
            else:
                _abandon(listing)  # asks for no other page
        if self.sent + cost >= self._pages():
            return (f"{self.sent + cost} lookup requests would cost as much as the index's "
                    f"{self._pages()} pages")
        return None

    def _pages(self) -> int:
        return max(1, math.ceil((self.account or 0) / PAGE_SIZE))

    # -- what planning asks (target_piriod.plan.Lookup) --------------------------------

    def customer(self, customer_id: str) -> dict | None:
        """Return a customer by id, or None if there is none."""
        if not sendable(customer_id):
            return None  # text that is not UTF-8 cannot be in a path: no customer's id
        if self.mode == "lookup" and customer_id not in self._ids and \
                self.index.get(customer_id) is None:
            self._look_up({customer_id}, {})
        if self.mode != "lookup":
            return self._from_index(customer_id)
        return self.index.get(customer_id)

    def customers_with(self, value: str) -> list[dict]:
        """Return the customers whose match key is ``value``."""
        if self.mode == "lookup" and value not in self._values and sendable(value):
            self._look_up(set(), {value: {value}})
        if self.mode != "lookup":
            self._use_index("planning asked before a batch was prepared")
            if self.moved and not self.index.find(value):
                self._verify_absent(value)
        return self.index.find(value)

    def _verify_absent(self, value: str) -> None:
        """Look up a key value that a moved index lacks, before planning creates it."""
        doubt = f"{self.spec.label} has no list filter to look it up by"
        if self.spec.field in FILTERABLE and not self.spec.metadata_key and sendable(value):
            found, why = self._filtered(value, value)
            for customer in found:
                self._add(customer)
            if why is None and (found or self.spec.field != "email"):
                return
            doubt = why or f"no customer has email {value!r}, and one may in other case"
        if not self._read_again:
            self._read_again = True
            self.logger.warning("Reading the customer listing once more before creating "
                                "customers the moved index lacks: %s", doubt)
            listing = self.client.listing(INDEX_QUERY)
            self.index.add_all(customer for page in listing for customer in page.results
                               if not self._known(customer))
            self._unverifiable = not listing.settled
            if self._unverifiable:
                self.logger.warning("The customer listing moved again (%s): records matching "
                                    "no customer are refused (unverified_match), not "
                                    "created; a re-run loads them", listing.churn)
        if self._unverifiable and not self.index.find(value):
            raise UnverifiedMatch(
                f"the customer listing kept moving while it was read, and no customer with "
                f"{self.spec.label}={value!r} could be ruled out ({doubt}): not created, "
                "so as not to create it twice; a re-run loads it")

    def _from_index(self, customer_id: str) -> dict | None:
        """Return a customer from the index, else from the API (created since the read)."""
        self._use_index("planning asked before a batch was prepared")
        found = self.index.get(customer_id)
        if found is None:
            customer = self.client.get_customer(customer_id)
            found = self.index.add(customer) if customer else None
        return found

    # -- lookups -----------------------------------------------------------------------

    def _look_up(self, ids: set[str], spellings: dict[str, set[str]]) -> None:
        """Look ids and key values up, ``max_workers`` at a time; index what they find.

        Falls back to the index (for the rest of the run) if an answer is not to be
        trusted. Fatal API errors propagate (the Loader turns them into a LoadError).
        """
        tasks: list[tuple[str, str, str]] = [("id", cid, cid) for cid in sorted(ids)]
        tasks += [("value", value, spelling) for value in sorted(spellings)
                  for spelling in sorted(spellings[value])]
        if not tasks:
            return
        with ThreadPoolExecutor(min(self.max_workers, len(tasks)),
                                thread_name_prefix="piriod-lookup") as pool:
            futures = [pool.submit(self._retrieve if kind == "id" else self._filtered,
                                   key, spelling) for kind, key, spelling in tasks]
        self.sent += len(tasks)
        doubts: list[str] = []  # why an answer is not to be trusted (the server's fault)
        held: dict[str, bool] = {}  # key value -> some spelling found a customer
        for (kind, key, _), future in zip(tasks, futures, strict=True):
            found, why = future.result()  # the first fatal error raises
            for customer in found:
                self._add(customer)
            if why is not None:
                doubts.append(why)
            elif kind == "id":
                self._ids.add(key)
            else:
                held[key] = held.get(key, False) or bool(found)
        if doubts:
            self._use_index(doubts[0], warn=True)
            return
        missed = sorted(value for value, found in held.items() if not found)
        if self.spec.field == "email" and missed:
            # The filter is exact, emails match case-blind: a miss is no proof that no
            # customer has the email spelled otherwise (the index would match it).
            self._use_index(f"no customer has email {missed[0]!r} as the records spell it, "
                            "and one may have it in other letter case")
            return
        self._values.update(held)

    def _retrieve(self, customer_id: str, _: str) -> tuple[list[dict], str | None]:
        """GET one customer; distrust an answer that is another customer."""
        customer = self.client.get_customer(customer_id)
        if customer is None:
            return [], None
        if not isinstance(customer, dict) or customer.get("id") != customer_id:
            got = customer.get("id") if isinstance(customer, dict) else type(customer).__name__
            return [], f"GET of customer {customer_id!r} answered {got!r}"
        return [customer], None

    def _filtered(self, value: str, spelling: str) -> tuple[list[dict], str | None]:
        """Read the list filtered by one spelling; distrust it if it ignored the filter."""
        field, found = self.spec.field, []
        pages = self.client.list_pages({field: spelling}, max_workers=1)
        try:
            for page in pages:
                count = page.payload.get("count") if isinstance(page.payload, dict) else None
                if page.number == 1 and type(count) is int and (self.account or 0) > 1 \
                        and count >= (self.account or 0):
                    return [], (f"the {field} filter answered {count} customers, as many as "
                                "the account has: the server ignores it")
                for customer in page.results:
                    if not self._holds(customer, value):
                        return [], (f"the {field} filter answered customers that do not "
                                    f"hold {field}={value!r}: the server ignores it")
                    found.append(customer)
        except ParametersRefusedError as error:
            return [], f"the server refuses the {field} filter ({error})"
        finally:
            _abandon(pages)  # an abandoned read asks for no further page
        return found, None

    def _holds(self, customer: Any, value: str) -> bool:
        """Tell whether an API customer has an id and holds the key value."""
        if not isinstance(customer, dict) or not isinstance(customer.get("id"), str):
            return False
        try:
            return self.spec.value_of(customer_shape(customer)) == value
        except (KeyError, TypeError, AttributeError):
            return False

    def _add(self, customer: dict) -> None:
        """Index a customer the run does not know yet (what it knows is newer or its own)."""
        if self.index.get(customer["id"]) is None:
            self.index.add(customer)

    # -- the index ---------------------------------------------------------------------

    def _use_index(self, reason: str, *, warn: bool = False) -> None:
        """Read every customer the index lacks, once; use the index for the rest of the run."""
        if self.mode == "index":
            return
        self.mode = "index"
        if warn:
            self.logger.warning("Reading the whole index instead of looking keys up: %s",
                                reason)
        else:
            self.logger.info("Reading the index: %s", reason)
        started, sent = time.monotonic(), self.client.requests_sent
        sent -= 1 if self._listing is not None else 0  # the page read to decide counts too
        customers = self.progress(self._every_customer())
        self.index.add_all(customer for customer in customers if not self._known(customer))
        keys = "id" if self.spec.field == "id" else f"id and {self.spec.label}"
        self.logger.info("Indexed %d customers by %s in %.2f s (%d requests)",
                         len(self.index), keys, time.monotonic() - started,
                         self.client.requests_sent - sent)

    def _every_customer(self) -> Iterator[dict]:
        """Yield the index listing's customers, from the page read to decide, if any.

        Read again while the listing moves (``piriod.listing``); ``moved`` says if it
        never held still.
        """
        begun, self._listing = self._listing, None

        def read_pass() -> Iterator[Page]:
            nonlocal begun
            if begun is None:
                return self.client.list_pages(INDEX_QUERY)
            pages, begun = itertools.chain([begun[0]], begun[1]), None
            return pages

        listing = Listing(read_pass, lambda: self.client.count(INDEX_QUERY),
                          logger=self.logger)
        for page in listing:
            yield from page.results
        self.moved = not listing.settled
        if self.moved:
            self.logger.warning(
                "The customer listing kept moving while the index was read (%d reads: %s): "
                "each create is looked up by key before it is sent", listing.passes,
                listing.churn)
        elif listing.passes > 1:
            self.logger.warning("The customer listing moved while the index was read and "
                                "was read %d times (%s); the last read held still",
                                listing.passes, listing.churn)

    def _known(self, customer: Any) -> bool:
        """Tell whether the index holds this customer already (looked up or written)."""
        customer_id = customer.get("id") if isinstance(customer, dict) else None
        return isinstance(customer_id, str) and self.index.get(customer_id) is not None


def _abandon(pages: Iterator[Page]) -> None:
    """Close a page read left part-way, so that it asks for no further page.

    ``PiriodClient.list_pages`` returns a generator, typed as the Iterator it is used as.
    """
    close = getattr(pages, "close", None)
    if close is not None:
        close()


def sendable(text: str) -> bool:
    """Tell whether text can go in a request (UTF-8: no lone surrogates from bad bytes)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
