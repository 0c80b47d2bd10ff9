"""The page reader's rules, on scripted answers (the HTTP paths are tested on the sandbox)."""

from __future__ import annotations

import threading

import pytest

from piriod.errors import ApiError, PaginationError
from piriod.pages import Page, page_results, read_pages


class Script:
    """Answers page queries from a dict: page number -> payload (or an HTTP status)."""

    def __init__(self, pages: dict, key: str = "page") -> None:
        self.pages, self.key = pages, key
        self.asked: list[dict] = []
        self.lock = threading.Lock()

    def __call__(self, query: dict, number: int) -> Page:
        with self.lock:
            self.asked.append(dict(query))
        answer = self.pages.get(int(query.get(self.key, 1)), 404)
        if isinstance(answer, int):
            raise ApiError("GET", "/customers/", answer, {"detail": "Invalid page."})
        return Page(number, answer)


def ids(pages) -> list:
    return [record["id"] for page in pages for record in page.results]


def numbered(total: int, size: int, links: bool = True) -> dict:
    pages = {}
    for number in range(1, -(-total // size) + 1):
        first = (number - 1) * size
        page = {"count": total, "results": [{"id": i} for i in range(first,
                                                                    min(total, first + size))]}
        if links:
            page["next"] = (f"http://other-host/customers/?page={number + 1}"
                            if first + size < total else None)
        pages[number] = page
    return pages


def test_page_results_in_every_shape_and_garbage_is_an_error():
    assert page_results([{"id": "a"}]) == [{"id": "a"}]
    assert page_results({"count": 1, "results": [{"id": "a"}]}) == [{"id": "a"}]
    with pytest.raises(PaginationError, match="without a `results` list"):
        page_results({"detail": "ok"})  # an empty index would re-create every customer


@pytest.mark.parametrize("links", [True, False])
@pytest.mark.parametrize("workers", [1, 4])
def test_numbered_lists_are_read_whole_in_order(links, workers):
    script = Script(numbered(250, 20, links))
    assert ids(read_pages(script, {"page_size": 20}, max_workers=workers)) == list(range(250))
    assert sorted(int(q.get("page", 1)) for q in script.asked) == list(range(1, 14))


def test_links_lend_only_their_query():
    pages = {1: {"next": "http://evil.example/elsewhere/?cursor=b", "results": [{"id": 1}]},
             2: {"next": None, "results": [{"id": 2}]}}
    script = Script({1: pages[1]}, key="page")
    script.pages = {}

    def fetch(query: dict, number: int) -> Page:
        script.asked.append(query)
        return Page(number, pages[2] if query.get("cursor") == "b" else pages[1])

    assert ids(read_pages(fetch, {"page_size": 100})) == [1, 2]
    assert script.asked[1] == {"page_size": 100, "cursor": "b"}


@pytest.mark.parametrize("next_link", ["http://h/customers/?page=1", "http://h/customers/",
                                       "http://h/customers/?page_size=100"])
def test_a_link_back_to_the_same_page_stops_the_read(next_link):
    script = Script({1: {"next": next_link, "results": [{"id": 1}]}})
    with pytest.raises(PaginationError, match="leads back to a page already read"):
        list(read_pages(script, {"page_size": 100}))
    assert len(script.asked) == 1


def test_links_cycling_between_two_pages_stop_the_read():
    script = Script({1: {"next": "http://h/customers/?cursor=2", "results": [{"id": 1}]},
                     2: {"next": "http://h/customers/?cursor=1", "results": [{"id": 2}]}},
                    key="cursor")
    pages = read_pages(script, {"page_size": 100})
    with pytest.raises(PaginationError, match="already read"):
        list(pages)


@pytest.mark.parametrize("past_the_data", [404, {"count": 3_000_000, "results": []}])
def test_a_bogus_count_ends_at_the_first_page_past_the_data(past_the_data, caplog):
    first = {"count": 3_000_000, "next": "http://h/customers/?page=2",
             "results": [{"id": 1}, {"id": 2}]}
    script = Script({1: first, 2: past_the_data, 3: past_the_data})
    assert ids(read_pages(script, {}, max_workers=8)) == [1, 2]
    assert len(script.asked) <= 1 + 8 * 2  # scheduled lazily, not 1,500,000 pages at once
    assert "past its data" in caplog.text


def test_a_page_vanishing_in_the_middle_is_an_error():
    pages = numbered(60, 20)
    pages[2] = 404
    with pytest.raises(PaginationError, match="page 2 of the listing vanished"):
        list(read_pages(Script(pages), {}, max_workers=1))


def test_a_linked_page_that_404s_is_named():
    pages = {1: {"next": "http://h/customers/?cursor=7", "results": [{"id": 1}]}}
    with pytest.raises(PaginationError, match="page 2 of the listing vanished"):
        list(read_pages(Script(pages, key="cursor"), {}))


def test_a_count_above_what_links_deliver_is_warned(caplog):
    script = Script({1: {"count": 5, "next": None, "results": [{"id": 1}]}})
    assert ids(read_pages(script, {})) == [1]
    assert "said 5 customers" in caplog.text


def test_a_bare_list_is_one_page():
    script = Script({1: [{"id": 1}, {"id": 2}]})
    assert ids(read_pages(script, {})) == [1, 2]
    assert len(script.asked) == 1


def test_an_abandoned_read_stops_fetching():
    script = Script(numbered(2000, 10))
    pages = read_pages(script, {}, max_workers=4)
    next(pages), next(pages)
    pages.close()
    asked = len(script.asked)
    assert asked <= 2 + 4 * 2 + 4  # the window, no more


@pytest.mark.parametrize("bad", ["", " ", ".", "..", "a\nb", "ab\udcffc", "x" * 201])
def test_an_id_that_cannot_be_one_path_segment_is_refused(bad):
    from piriod.client import InvalidIdError, customer_path

    with pytest.raises(InvalidIdError):
        customer_path(bad)
    assert customer_path("../invoices/inv1") == "/customers/..%2Finvoices%2Finv1/"
