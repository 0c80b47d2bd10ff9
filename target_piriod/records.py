"""Turning incoming records into validated write payloads.

The JSON schema of the write payload is derived from ``schemas/customers.json`` (the
single source): its ``x-writable`` properties, with country and state as the codes the
API takes (the read schema describes them as objects whose ``id`` is that code).
"""

from __future__ import annotations

import copy
import datetime
from functools import cache
from typing import Any

import jsonschema

from tap_piriod.schema import load_customers_schema
from target_piriod.matching import CODE_FIELDS, write_shape


@cache
def write_schema() -> dict:
    """Return the JSON schema a write payload must satisfy."""
    schema = load_customers_schema()
    properties = {name: copy.deepcopy(schema["properties"][name])
                  for name in schema["x-writable"]}
    for name in CODE_FIELDS:
        code = dict(properties[name]["properties"]["id"])
        code["type"] = ["string", "null"]
        properties[name] = {"description": properties[name].get("description", ""), **code}
    return {"type": "object", "properties": properties, "additionalProperties": False}


class PayloadValidator:
    """Validates payloads against ``write_schema()`` (formats such as email included)."""

    def __init__(self) -> None:
        self._validator = jsonschema.Draft7Validator(
            write_schema(), format_checker=jsonschema.Draft7Validator.FORMAT_CHECKER)

    def errors(self, payload: dict) -> list[str]:
        """Return one readable message per problem, e.g. ``email: 'x' is not a 'email'``."""
        found = sorted(self._validator.iter_errors(payload), key=lambda e: list(e.path))
        return [f"{'.'.join(map(str, error.path)) or '(record)'}: {error.message}"
                for error in found]


def to_payload(record: dict) -> dict:
    """Return the record's writable attributes in write shape, JSON-ready."""
    return {name: _json_ready(value) for name, value in write_shape(record).items()}


def _json_ready(value: Any) -> Any:
    """Turn dates a tap's schema made the SDK parse back into ISO strings."""
    if isinstance(value, datetime.date | datetime.time):
        return value.isoformat()
    if isinstance(value, dict):
        return {key: _json_ready(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_json_ready(item) for item in value]
    return value
