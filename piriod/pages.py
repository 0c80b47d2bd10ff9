"""Reading a Piriod list to its end: pagination, the one rule both connectors share.

The documentation says nothing of pagination, so we read what Django REST Framework
does and check each guess against what comes back:

* ``{"count", "next", "previous", "results"}`` pages, linked by ``next`` (null on the last);
* an API that counts but does not link (``count`` without ``next``) is read by page number
  until ``count`` records have come; without that, every later page would be lost;
* a bare JSON list is the whole list; a page without a ``results`` list is an error, never
  an empty page (an index built from it would let the target create duplicates).

A ``next`` link lends only its query: it is asked of the listing's own path under
``api_url``. A backend behind a proxy often writes its internal host, ``http://`` or a
path without ``api_url``'s prefix there, and the token must never go to another host.
A link that leads back to a page already read stops the read with an error: otherwise
a server whose links cycle would make a run loop (and a tap emit duplicates) forever.

When the first page shows page-number pagination (DRF's ``?page=2``, or a count without
links), the later pages are known in advance and ``read_pages`` fetches them
``max_workers`` at a time, scheduled lazily (a bounded window ahead of the reader, so a
bogus ``count`` of millions costs nothing) and yielded in order. The first page past
the data (404 or empty) ends the listing; if ``count`` promised more, that is logged.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Generator, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from piriod.errors import ApiError, PaginationError, excerpt

LOGGER = logging.getLogger("piriod")


class ListingMovedError(PaginationError):
    """A page vanished in the middle of a read: the listing moved (or its links are wrong).

    ``piriod.listing`` reads such a listing again; only a hole in every pass is an error.
    """

WINDOW_PER_WORKER = 2  # pages fetched ahead of the reader, per worker


@dataclass
class Page:
    """One page of a listing, as the API answered it."""

    number: int  # its position in the listing, 1 for the first
    payload: Any
    headers: Any = field(default_factory=dict)
    elapsed: float = 0.0

    @property
    def results(self) -> list[dict]:
        """Return the page's records (its ``results``, or the bare list)."""
        return page_results(self.payload)


# Fetches the page of a query: the client's GET of the listing's path.
Fetch = Callable[[dict[str, Any], int], Page]


def page_results(payload: Any) -> list[dict]:
    """Return the records of a list page, or raise if the page holds none we can read."""
    if isinstance(payload, list):
        return payload
    if isinstance(payload, dict) and isinstance(payload.get("results"), list):
        return payload["results"]
    raise PaginationError(f"a list page came without a `results` list; is api_url a "
                          f"Piriod API? ({excerpt(payload)})")


def following_page(payload: Any, records_read: int, page_number: int) -> str | int | None:
    """Return what comes after a list page, given the records read so far, page included.

    The page's ``next`` link (str) when it has the key, even null on a last page; else
    the next page number (int) while fewer than ``count`` records have come; else None.
    A bare JSON list, or an empty page without links, is the end.
    """
    if not isinstance(payload, dict):
        return None
    if "next" in payload:
        return payload["next"] or None
    count = _count(payload)
    if payload.get("results") and count is not None and records_read < count:
        return page_number + 1
    return None


def read_pages(fetch: Fetch, query: dict[str, Any], *, max_workers: int = 1,
               logger: logging.Logger = LOGGER) -> Iterator[Page]:
    """Yield every page of a listing in order (see the module docstring for the rules)."""
    first = fetch(query, 1)
    tally = _Tally(len(first.results), first)
    yield first
    if _numbered(first.payload):
        past_the_data = yield from _numbered_pages(fetch, query, max_workers, logger, tally)
        if past_the_data:
            return
    # Links after the last numbered page too: a count that was too low loses nothing.
    yield from _linked_pages(fetch, query, tally.last, tally.read, logger)


@dataclass
class _Tally:
    """What has been read so far: records, and the last page."""

    read: int
    last: Page


def _linked_pages(fetch: Fetch, query: dict[str, Any], page: Page, read: int,
                  logger: logging.Logger) -> Iterator[Page]:
    """Yield the pages after ``page`` by following links (or numbers), one at a time."""
    # Every page read so far, numbered ones included: a link back to any of them cycles.
    seen = {_canonical({**query, "page": number}) for number in range(1, page.number + 1)}
    while (following := following_page(page.payload, read, page.number)) is not None:
        if isinstance(following, int):
            next_query = {**query, "page": following}
        else:
            next_query = {**query, **dict(parse_qsl(urlsplit(following).query))}
        marker = _canonical(next_query)
        if marker in seen:
            raise PaginationError(
                f"the listing's `next` link after page {page.number} ({excerpt(following)}) "
                "leads back to a page already read: the API's links cycle, stopping "
                "rather than reading the same customers forever")
        seen.add(marker)
        try:
            page = fetch(next_query, page.number + 1)
        except ApiError as error:
            if error.status == 404:
                raise ListingMovedError(
                    f"page {page.number + 1} of the listing vanished (its link answered "
                    "404): the data changed during the read or the API's links are wrong; "
                    "a re-run reads it again") from error
            raise
        read += len(page.results)
        yield page
    _warn_if_short(page.payload, read, page.number, logger)


def _numbered_pages(fetch: Fetch, query: dict[str, Any], max_workers: int,
                    logger: logging.Logger, tally: _Tally) -> Generator[Page, None, bool]:
    """Yield pages 2..N of a numbered listing, fetched ahead on ``max_workers`` threads.

    Stops at the first page past the data (404 or empty), after checking that the page
    after it is past the data too (a page that vanished in the middle is an error), and
    then returns True.
    """
    first = tally.last
    size, count = len(first.results), _count(first.payload) or 0
    if not size:
        return False
    pages = -(-count // size)
    pool = ThreadPoolExecutor(max(1, max_workers), thread_name_prefix="piriod-pages")
    window: deque[tuple[int, Future]] = deque()
    scheduled = 1

    def fetch_or_none(number: int) -> Page | None:
        try:
            page = fetch({**query, "page": number}, number)
        except ApiError as error:
            if error.status == 404:
                return None
            raise
        return page if page.results else None

    try:
        while True:
            while scheduled < pages and len(window) < max(1, max_workers) * WINDOW_PER_WORKER:
                scheduled += 1
                window.append((scheduled, pool.submit(fetch_or_none, scheduled)))
            if not window:
                return False
            number, future = window.popleft()
            page = future.result()
            if page is None:
                _check_data_ended(number, window, fetch_or_none, pages)
                logger.warning("The listing said %d customers in %d pages, but page %d is "
                               "past its data: reading stopped there", count, pages, number)
                return True
            tally.read, tally.last = tally.read + len(page.results), page
            yield page
    finally:  # a failed or abandoned read sends none of the pages not yet started
        pool.shutdown(wait=True, cancel_futures=True)


def _check_data_ended(number: int, window: deque, fetch_or_none: Callable,
                      pages: int) -> None:
    """Raise if any page after ``number`` still holds data (a page vanished mid-list)."""
    later = [future.result() for _, future in window]
    if not later and number < pages:
        later = [fetch_or_none(number + 1)]
    if any(page is not None for page in later):
        raise ListingMovedError(
            f"page {number} of the listing vanished (404 or empty) while later pages hold "
            "customers: the data changed during the read; a re-run reads it again")


def _warn_if_short(payload: Any, read: int, number: int, logger: logging.Logger) -> None:
    count = _count(payload) if isinstance(payload, dict) else None
    if count is not None and read < count:
        logger.warning("The listing said %d customers but its %d page(s) held %d",
                       count, number, read)


def _numbered(payload: Any) -> bool:
    """Tell whether a first page shows page-number pagination (count, page=2 or no link)."""
    if not isinstance(payload, dict) or _count(payload) is None:
        return False
    if "next" not in payload:
        return bool(payload.get("results"))
    link = payload["next"]
    return isinstance(link, str) and dict(parse_qsl(urlsplit(link).query)).get("page") == "2"


def _count(payload: dict) -> int | None:
    """Return the page's ``count`` if it is a non-negative integer (a bool is not)."""
    count = payload.get("count")
    return count if type(count) is int and count >= 0 else None


def _canonical(query: dict[str, Any]) -> tuple:
    """Return what identifies a page: its query, ``page=1`` and no page being the same."""
    items = {str(key): str(value) for key, value in query.items()}
    if items.get("page") == "1":
        del items["page"]
    return tuple(sorted(items.items()))
