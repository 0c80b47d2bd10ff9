"""What follows a page of a Piriod list: the one pagination rule the tap and target share.

The documentation says nothing of pagination. Django REST Framework links its pages
(``next``, null on the last one); an API that only counts them (``count`` without links)
would look like a one-page list, and every later page would be lost without an error.
"""

from __future__ import annotations

from typing import Any


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
    count = payload.get("count")
    if payload.get("results") and isinstance(count, int) and records_read < count:
        return page_number + 1
    return None
