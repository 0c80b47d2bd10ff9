"""Turning incoming records into validated write payloads.

The JSON schema of the write payload is derived from ``schemas/customers.json`` (the
single source): its ``x-writable`` properties, with country and state as the codes the
API takes (the read schema describes them as objects whose ``id`` is that code).
"""

from __future__ import annotations

import copy
import datetime
import decimal
import math
import re
from collections.abc import Callable
from functools import cache
from typing import Any

import jsonschema

from piriod.schema import load_customers_schema
from target_piriod.codes import code_problems
from target_piriod.diff import CODE_FIELDS, WRITABLE, write_shape
from target_piriod.jsonsafe import MAX_DEPTH, TooDeep, json_problems, shorten


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
    """Validates payloads against ``write_schema()`` (formats such as email included).

    jsonschema is slow for a hot loop, and it runs in the thread that plans while the
    writers wait for the GIL. Most payloads are valid, so ``errors`` first asks a check
    compiled from the schema (``_compile_fast_check``) that answers "valid" for exactly
    the payloads jsonschema accepts; only the others go to jsonschema, for its messages
    (docs/benchmarks.md has the measured difference).
    """

    def __init__(self) -> None:
        schema = write_schema()
        checker = jsonschema.Draft7Validator.FORMAT_CHECKER
        self._validator = jsonschema.Draft7Validator(schema, format_checker=checker)
        self._fast_check = _compile_fast_check(schema, checker)

    def errors(self, payload: dict) -> list[str]:
        """Return one readable message per problem, e.g. ``email: 'x' is not a 'email'``.

        What no JSON body can carry (NaN, Infinity, text that is not UTF-8) is a problem
        too, named first; a value quoted in a message is cut to a few hundred characters.
        """
        problems = json_problems(payload) + code_problems(payload)
        if not problems and self._fast_check is not None and self._fast_check(payload):
            return []
        found = sorted(self._validator.iter_errors(payload), key=lambda e: list(e.path))
        return problems + [
            f"{'.'.join(map(str, error.path)) or '(record)'}: {shorten(error.message)}"
            for error in found]


# The keywords the fast check implements; a schema using any other is left to jsonschema.
_FAST_KEYWORDS = {"type", "maxLength", "pattern", "format", "description",
                  "additionalProperties"}
_FAST_TYPES: dict[str, type] = {"string": str, "object": dict, "null": type(None)}


def _compile_fast_check(schema: dict, checker: jsonschema.FormatChecker,
                        ) -> Callable[[dict], bool] | None:
    """Return a function telling whether a payload is valid, or None if it cannot.

    It covers the shape of the write schema: an object of known properties, each typed
    string/object/null with maxLength, pattern and format on strings, all checked as
    Draft 7 checks them (``len`` in code points, ``re.search``, the same FormatChecker).
    """
    if set(schema) - {"type", "properties", "additionalProperties"} or \
            schema.get("type") != "object" or schema.get("additionalProperties") is not False:
        return None
    checks = {name: _compile_property(rules, checker)
              for name, rules in schema["properties"].items()}
    if any(check is None for check in checks.values()):
        return None

    def check(payload: dict) -> bool:
        for name, value in payload.items():
            property_check = checks.get(name)
            if property_check is None or not property_check(value):
                return False
        return True

    return check


def _compile_property(rules: dict, checker: jsonschema.FormatChecker,
                      ) -> Callable[[Any], bool] | None:
    """Return a check of one property's value (see ``_compile_fast_check``), or None."""
    types = rules.get("type")
    types = [types] if isinstance(types, str) else types
    if set(rules) - _FAST_KEYWORDS or not types or set(types) - set(_FAST_TYPES) or \
            rules.get("additionalProperties", True) is not True:
        return None
    allowed = tuple(_FAST_TYPES[name] for name in types)
    max_length = rules.get("maxLength")
    pattern = re.compile(rules["pattern"]) if "pattern" in rules else None
    format_name = rules.get("format")

    def check(value: Any) -> bool:
        if type(value) not in allowed and not isinstance(value, allowed):
            return False
        if not isinstance(value, str):
            return True  # the string keywords do not apply to objects or null
        return ((max_length is None or len(value) <= max_length)
                and (pattern is None or pattern.search(value) is not None)
                and (format_name is None or checker.conforms(value, format_name)))

    return check


# What an empty cell (``""``, or only spaces) in a writable attribute means: a CSV export or
# a spreadsheet has one for every value it does not know. "ignore" (the default) leaves
# the attribute as Piriod holds it, as if the column were absent; "clear" sets it to null,
# except the attributes Piriod requires, which are never cleared (left as they are).
EMPTY_VALUES = ("ignore", "clear")
REQUIRED = frozenset({"name"})


def to_payload(record: dict, empty_values: str = "ignore") -> dict:
    """Return the record's writable attributes in write shape, JSON-ready.

    Empty strings are dropped or made null first (``EMPTY_VALUES``), so that validation
    never refuses an empty cell as ``email: '' is not a 'email'``. Only top-level text:
    a ``metadata`` value of ``""`` is a value like any other.
    """
    shaped = write_shape(_without_empty_cells(record, empty_values))
    return {name: _json_ready(value, 1) for name, value in shaped.items()}


def _without_empty_cells(record: dict, empty_values: str) -> dict:
    """Return the record with its empty writable strings dropped or set to None."""
    empty = [name for name, value in record.items()  # hot path: no string is copied
             if isinstance(value, str) and (not value or value.isspace()) and name in WRITABLE]
    if not empty:
        return record
    cleared = [name for name in empty if name not in REQUIRED] if empty_values == "clear" \
        else []
    kept = {name: value for name, value in record.items() if name not in empty}
    return {**kept, **dict.fromkeys(cleared)}


def _json_ready(value: Any, depth: int) -> Any:
    """Make a record's value what the API takes and gives back.

    Dates a tap's schema made the SDK parse become ISO strings again; numbers the SDK
    read as Decimal become floats, as the API's are read back (a re-run compares equal),
    except one beyond a double's range, which stays a Decimal that validation refuses.
    Below ``MAX_DEPTH`` levels a ``TooDeep`` stands for the rest (refused as well).
    """
    if depth > MAX_DEPTH:
        return TooDeep()
    if isinstance(value, datetime.date | datetime.time):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        number = float(value) if value.is_finite() else math.nan
        return number if math.isfinite(number) else value
    if isinstance(value, dict):
        return {key: _json_ready(item, depth + 1) for key, item in value.items()}
    if isinstance(value, list):
        return [_json_ready(item, depth + 1) for item in value]
    return value
