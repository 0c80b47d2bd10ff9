"""Write shape, merging and diffing: what a record asks for against what a customer holds.

The API reads country and state back as objects but takes them as codes, and it replaces
``metadata`` as a whole on PATCH. Everything here works on one *write shape* (codes, a
metadata dict) so that a customer read from the API and a record from any tap (including
``tap-piriod``'s read-shape records) compare equal when they hold the same values, which
is what makes a repeated load write nothing.
"""

from __future__ import annotations

from typing import Any

from piriod.schema import writable_attributes

WRITABLE = writable_attributes()
CODE_FIELDS = ("country", "state")


def to_code(value: Any) -> Any:
    """Turn a country/state object (``{"id": "CL", ...}``) or code into a code.

    Codes are trimmed and upper-cased; an object without an ``id`` is returned as is so
    that validation rejects it with a clear reason instead of sending it.
    """
    if isinstance(value, dict):
        return to_code(value["id"]) if value.get("id") else value
    if isinstance(value, str):
        return value.strip().upper() or None  # an empty cell means "no country"
    return value


def write_shape(doc: dict) -> dict:
    """Return the writable attributes a record or customer holds, in write shape.

    Attributes absent from ``doc`` stay absent (a sparse record changes only what it has);
    a null ``metadata`` is treated as absent, since a warehouse NULL means "no data".
    """
    shaped = {name: doc[name] for name in WRITABLE if name in doc}
    for name in CODE_FIELDS:
        if name in shaped:
            shaped[name] = to_code(shaped[name])
    if shaped.get("metadata", {}) is None:
        del shaped["metadata"]
    return shaped


def customer_shape(customer: dict) -> dict:
    """Return an API customer (read shape) as write shape plus its id."""
    shaped = write_shape(customer)
    shaped["metadata"] = customer.get("metadata") or {}
    shaped["id"] = customer["id"]
    return shaped


def merge_metadata(current: dict | None, incoming: dict) -> dict:
    """Overlay a record's metadata keys on the customer's; a null value removes a key.

    The API replaces metadata wholesale, so the target sends the merged object: a load
    that only knows ``erp_id`` must not wipe keys that other systems keep there.
    """
    merged = {**(current or {}), **incoming}
    return {key: value for key, value in merged.items() if value is not None}


def merge_payloads(earlier: dict, later: dict) -> dict:
    """Combine two records for the same key: the later values win, metadata key by key."""
    merged = {**earlier, **later}
    if "metadata" in earlier and "metadata" in later:
        merged["metadata"] = {**earlier["metadata"], **later["metadata"]}
    return merged


def creation_body(payload: dict) -> dict:
    """Return the POST body for a new customer (metadata without null values)."""
    body = dict(payload)
    if "metadata" in body:
        body["metadata"] = merge_metadata(None, body["metadata"])
    return body


def changes_for(current: dict, payload: dict) -> dict:
    """Return only the attributes whose values differ from the customer's (the PATCH body).

    Text that differs only by surrounding whitespace is the same value: a Django REST
    Framework API trims what it stores (``CharField(trim_whitespace=True)``), so sending a
    warehouse's padded ``" 76.000.001-6 "`` would patch the customer on every run.
    """
    changes = {}
    for name, value in payload.items():
        if name == "metadata":
            merged = merge_metadata(current.get("metadata"), value)
            if merged != (current.get("metadata") or {}):
                changes[name] = merged
        elif not _same_value(current.get(name), value):
            changes[name] = value
    return changes


def _same_value(stored: object, incoming: object) -> bool:
    if isinstance(stored, str) and isinstance(incoming, str):
        return stored.strip() == incoming.strip()
    return stored == incoming
