"""Reading a listing that may move under the read, and knowing whether it did.

Piriod pages ``/customers/`` by page number (offset). A delete, or an insert in the
middle of the order (a transaction committing late carries an earlier ``created``),
shifts every later row by one slot while the pages are read: a row can fall between two
pages and never be read in that pass; with pages fetched ahead, out of order, an insert
skips rows too. Nothing in one page says it happened, but a pass leaves evidence:

* every DRF page carries ``count``: pages of one pass that disagree, or a closing probe
  (``page_size=1`` of the same query, after the last page) that disagrees with them;
* the same customer version read twice in one pass (rows shifted over a page edge, or
  pulled back pages later between two out-of-order fetches);
* a page that vanished in the middle (``ListingMovedError`` from ``piriod.pages``);
* a pass that read a number of customers other than ``count``, unless the pass before
  read exactly the same set (a server whose count is stably wrong, not a moving one).

A pass with none of these is *settled*: a snapshot as good as one query. A moved pass
is followed by another, up to ``MAX_PASSES`` in all; ``Listing`` yields every customer
version once per run (later passes skip what earlier ones yielded: a 64-bit hash of id
and ``updated``, kept in a sorted array of 8 bytes per customer, only for the run; the
pass being read also keeps a set of its own, ~85 bytes per customer), and then tells
the caller whether the last pass settled, how many passes it took and what churn it saw. A settled
quiet read costs one request more than the pages: the probe (none for a single page,
which is one query).
"""

from __future__ import annotations

import logging
from array import array
from bisect import bisect_left
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from piriod.pages import ListingMovedError, Page

MAX_PASSES = 3  # one read and two re-reads: then the caller is told it never settled
LOGGER = logging.getLogger("piriod")
_BITS = 0xFFFFFFFFFFFFFFFF


@dataclass
class PassEvidence:
    """What one pass over a listing saw of movement."""

    counts: list[int] = field(default_factory=list)  # each page's count, then the probe's
    repeats: int = 0  # customer versions read again at once (over a page edge)
    vanished: str = ""  # why the pass stopped early (a page vanished), if it did
    unique: int = 0  # customer versions read, less those repeats
    fingerprint: int = 0  # order-free hash of the set read (sum of hashes, 64-bit)

    def movement(self, previous: PassEvidence | None) -> list[str]:
        """Return what says the listing moved during this pass (empty: settled)."""
        seen: list[str] = []
        distinct = list(dict.fromkeys(self.counts))
        if len(distinct) > 1:
            seen.append("count " + "→".join(str(count) for count in distinct))
        if self.repeats:
            seen.append(f"{self.repeats} customer(s) read twice")
        if self.vanished:
            seen.append(self.vanished)
        stable_lie = previous is not None and previous.fingerprint == self.fingerprint \
            and previous.unique == self.unique
        if not seen and distinct and distinct[-1] != self.unique and not stable_lie:
            seen.append(f"{self.unique} customers read where the count said {distinct[-1]}")
        return seen


class Listing:
    """Iterate a listing's pages over as many passes as it takes to see it hold still.

    ``read_pass()`` starts one pass (an iterator of pages); ``probe()`` returns the
    listing's ``count`` now (or None). Pages come out with only the customers not yielded
    before in this run. Afterwards: ``settled``, ``passes`` and ``churn`` (text for logs).
    """

    def __init__(self, read_pass: Callable[[], Iterator[Page]],
                 probe: Callable[[], int | None], *, max_passes: int = MAX_PASSES,
                 logger: logging.Logger = LOGGER) -> None:
        self.read_pass, self.probe = read_pass, probe
        self.max_passes = max(1, max_passes)
        self.logger = logger
        self.settled = False
        self.passes = 0
        self.seen: list[str] = []  # the movement of every moved pass, for the log
        self.repeats_skipped = 0  # customers not yielded again (read by an earlier pass)
        self._yielded = array("q")  # versions yielded by earlier passes, sorted

    @property
    def churn(self) -> str:
        """Describe the movement seen, pass by pass (empty if none)."""
        return "; ".join(f"pass {n}: {what}" for n, what in enumerate(self.seen, 1) if what)

    def __iter__(self) -> Iterator[Page]:
        previous: PassEvidence | None = None
        vanished_every_pass: ListingMovedError | None = None
        while self.passes < self.max_passes:
            self.passes += 1
            evidence, versions = PassEvidence(), array("q")
            try:
                yield from self._one_pass(evidence, versions)
            except ListingMovedError as error:
                evidence.vanished = str(error)
                vanished_every_pass = error if self.passes == 1 or vanished_every_pass \
                    else None
            else:
                vanished_every_pass = None
            movement = evidence.movement(previous)
            if not movement:
                self.settled = True
                return
            # Only a read that goes on needs them: what earlier passes yielded, sorted.
            self._yielded = array("q", sorted(set(self._yielded).union(versions)))
            self.seen.append(", ".join(movement))
            if self.passes < self.max_passes:
                self.logger.warning("The listing moved while it was read (%s): reading it "
                                    "again (pass %d of at most %d)", self.seen[-1],
                                    self.passes + 1, self.max_passes)
            previous = evidence
        if vanished_every_pass is not None:
            raise vanished_every_pass  # the same hole every time: a broken API, not churn

    def _one_pass(self, evidence: PassEvidence, versions: array) -> Iterator[Page]:
        """Yield one pass's pages, holding only versions no earlier pass yielded.

        ``versions`` gets the hash of every customer version read (8 bytes each), kept
        for the passes after this one. A row that rows inserted before it pushed over a
        page edge comes again at the start of the next page; with pages fetched ahead and
        out of order, deletes between two fetches can bring a row back several pages
        later. Either is a repeat: counted, and never yielded twice. So this pass keeps
        a set of what it read (~85 bytes a customer, freed when the pass ends): checking
        only the previous page let a row pulled back two pages be emitted twice.
        """
        pages, earlier, this_pass = 0, self._yielded, set()
        for page in self.read_pass():
            pages += 1
            count = _count(page.payload)
            if count is not None:
                evidence.counts.append(count)
            fresh = []
            for customer in page.results:
                version = hash((customer.get("id"), str(customer.get("updated"))))
                versions.append(version)
                if version in this_pass:
                    evidence.repeats += 1
                    continue
                this_pass.add(version)
                evidence.unique += 1
                evidence.fingerprint = (evidence.fingerprint + version) & _BITS
                if earlier and _holds(earlier, version):
                    self.repeats_skipped += 1
                    continue
                fresh.append(customer)
            payload = {**page.payload, "results": fresh} if isinstance(page.payload, dict) \
                else fresh
            yield Page(page.number, payload, page.headers, page.elapsed)
        single = pages == 1 and evidence.counts and evidence.counts[0] == evidence.unique
        if evidence.counts and not single:
            closing = self.probe()
            if closing is not None:
                evidence.counts.append(closing)


def _holds(ordered: array, version: int) -> bool:
    """Tell whether a sorted array holds a version (binary search)."""
    at = bisect_left(ordered, version)
    return at < len(ordered) and ordered[at] == version


def _count(payload: Any) -> int | None:
    count = payload.get("count") if isinstance(payload, dict) else None
    return count if type(count) is int and count >= 0 else None
