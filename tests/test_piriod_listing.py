"""``piriod.listing`` on scripted listings that move between given requests.

The HTTP paths (the sandbox's churn control, real tap and target processes) are tested in
tests/test_tap_churn.py and tests/test_target_churn.py; here every move is exact.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable

import pytest

from piriod.errors import ApiError
from piriod.listing import Listing
from piriod.pages import ListingMovedError, Page, read_pages

SIZE = 10


class Moving:
    """A page-numbered listing of rows; ``moves[n]`` runs before the n-th request."""

    def __init__(self, total: int, moves: dict[int, Callable[[list], None]] | None = None,
                 links: bool = False, count_offset: int = 0) -> None:
        self.rows = [{"id": f"c{i:04d}", "updated": "u0"} for i in range(total)]
        self.moves = moves or {}
        self.links, self.count_offset = links, count_offset
        self.requests = 0
        self.lock = threading.Lock()

    def fetch(self, query: dict, number: int) -> Page:
        with self.lock:
            self.requests += 1
            if self.requests in self.moves:
                self.moves[self.requests](self.rows)
            size = int(query.get("page_size", SIZE))
            page = int(query.get("page", 1))
            start = (page - 1) * size
            if page > 1 and start >= len(self.rows):
                raise ApiError("GET", "/customers/", 404, {"detail": "Invalid page."})
            payload = {"count": len(self.rows) + self.count_offset,
                       "results": [dict(row) for row in self.rows[start:start + size]]}
            if self.links:
                more = start + size < len(self.rows)
                payload["next"] = f"http://h/customers/?page={page + 1}" if more else None
            return Page(number, payload)

    def listing(self, workers: int = 1) -> Listing:
        def read_pass():
            return read_pages(self.fetch, {"page_size": SIZE}, max_workers=workers)

        def probe():
            return self.fetch({"page_size": 1}, 1).payload["count"]

        return Listing(read_pass, probe)


def delete_first(n: int) -> Callable[[list], None]:
    return lambda rows: rows.__delitem__(slice(0, n))


def insert_early(n: int) -> Callable[[list], None]:
    def insert(rows: list) -> None:
        for k in range(n):
            rows.insert(1, {"id": f"late{len(rows)}-{k}", "updated": "u1"})
    return insert


def read(listing: Listing) -> list[dict]:
    return [customer for page in listing for customer in page.results]


def assert_once(customers: list[dict]) -> None:
    twice = [v for v, n in Counter((c["id"], c["updated"]) for c in customers).items() if n > 1]
    assert not twice, f"yielded twice: {twice}"


@pytest.mark.parametrize("workers", [1, 8])
@pytest.mark.parametrize("links", [False, True])
def test_a_quiet_listing_is_one_pass_and_one_probe(workers, links):
    script = Moving(95, links=links)
    listing = script.listing(workers)
    assert [c["id"] for c in read(listing)] == [f"c{i:04d}" for i in range(95)]
    assert listing.settled and listing.passes == 1 and listing.churn == ""
    assert script.requests == 10 + 1  # the pages, and the closing probe


def test_a_single_page_needs_no_probe():
    script = Moving(7)
    listing = script.listing()
    assert len(read(listing)) == 7 and listing.settled and script.requests == 1


@pytest.mark.parametrize("workers", [1, 8])
@pytest.mark.parametrize("links", [False, True])
def test_a_delete_mid_read_is_seen_and_the_reread_finds_what_was_skipped(workers, links):
    script = Moving(95, {3: delete_first(3)}, links=links)
    listing = script.listing(workers)
    customers = read(listing)
    assert {c["id"] for c in customers} >= {row["id"] for row in script.rows}
    assert_once(customers)
    assert listing.settled and listing.passes == 2
    assert "count 95→92" in listing.churn


def test_without_the_reread_the_delete_loses_customers():
    """What the old single pass did: the shift skips rows at the page edge."""
    script = Moving(95, {3: delete_first(3)})
    once = [c["id"] for p in read_pages(script.fetch, {"page_size": SIZE}) for c in p.results]
    assert {row["id"] for row in script.rows} - set(once)  # the evidence the test relies on


def test_an_insert_before_a_page_edge_repeats_a_row_and_is_not_yielded_twice():
    script = Moving(95, {3: insert_early(1)}, count_offset=0)
    listing = script.listing(1)
    customers = read(listing)
    assert_once(customers)
    assert {c["id"] for c in customers} == {row["id"] for row in script.rows}
    assert "read twice" in listing.churn and listing.settled


@pytest.mark.parametrize("workers", [1, 8])
def test_a_listing_that_never_holds_still_is_reported_not_settled(workers):
    script = Moving(95, {n: delete_first(1) for n in range(2, 200)})
    listing = script.listing(workers)
    customers = read(listing)
    assert_once(customers)
    assert not listing.settled and listing.passes == 3
    assert listing.churn.count("pass ") == 3


def test_a_stably_wrong_count_settles_on_the_second_identical_pass():
    script = Moving(25, links=True, count_offset=5)  # says 30, holds 25, every time
    listing = script.listing()
    assert len(read(listing)) == 25
    assert listing.settled and listing.passes == 2


def test_a_page_that_vanishes_once_is_churn_every_time_an_error():
    def vanish(rows: list) -> None:
        del rows[:]

    def restore(rows: list) -> None:
        rows[:] = [{"id": f"c{i:04d}", "updated": "u0"} for i in range(95)]

    script = Moving(95, {3: vanish, 4: restore})
    listing = script.listing(1)
    assert len({c["id"] for c in read(listing)}) == 95 and listing.settled

    broken = Moving(95)
    original = broken.fetch

    def hole(query: dict, number: int) -> Page:
        if int(query.get("page", 1)) == 2:
            raise ApiError("GET", "/customers/", 404, {"detail": "Invalid page."})
        return original(query, number)

    broken.fetch = hole  # type: ignore[method-assign]
    with pytest.raises(ListingMovedError, match="page 2 of the listing vanished"):
        read(broken.listing(1))


def test_a_row_that_comes_back_pages_later_is_yielded_once():
    # 30 late inserts before the 4th request push page 1's rows into page 4: a repeat three
    # pages apart (with pages fetched ahead, deletes bring rows back the same way). The old
    # check against the previous page alone yielded c0001..c0009 twice.
    moving = Moving(50, {4: insert_early(30)})
    listing = moving.listing()
    ids = Counter(row["id"] for page in listing for row in page.results)
    assert [i for i, times in ids.items() if times > 1] == []
    assert not listing.settled or listing.passes > 1
    assert "read twice" in listing.churn
    assert {row["id"] for row in moving.rows} <= set(ids)
