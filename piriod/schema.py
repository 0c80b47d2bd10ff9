"""The customers schema: one JSON file, found in the wheel or in the source checkout.

``schemas/customers.json`` at the repository root is the single source. A built wheel
carries a copy at ``piriod/schemas/customers.json`` (see pyproject.toml); an editable
install or a source checkout reads the root file directly.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from pathlib import Path

SCHEMA_NAME = "customers.json"


def schemas_dir() -> Path:
    """Return the directory of the streams' schemas (``<stream name>.json``)."""
    return customers_schema_path().parent


def customers_schema_path() -> Path:
    """Return the path of customers.json, preferring the copy packaged in the wheel."""
    packaged = Path(str(resources.files("piriod") / "schemas" / SCHEMA_NAME))
    if packaged.is_file():
        return packaged
    return Path(__file__).resolve().parent.parent / "schemas" / SCHEMA_NAME


@cache
def _load() -> str:
    return customers_schema_path().read_text(encoding="utf-8")


def load_customers_schema() -> dict:
    """Return a fresh copy of the customers schema (callers may mutate it)."""
    return json.loads(_load())


def writable_attributes() -> tuple[str, ...]:
    """Return the attributes a client may send on POST and PATCH (the schema's x-writable)."""
    return tuple(load_customers_schema()["x-writable"])
