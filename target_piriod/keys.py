"""How a record finds its customer: the ``match_field`` setting and normalised key values.

A record is matched by its Piriod ``id`` when it has one, otherwise by the value of
``match_field`` (an attribute such as ``tax_id``, or ``metadata.<key>``). Key values are
compared normalised (trimmed, emails case-blind, metadata values as strings) so that
``" 76.1-K"`` in a warehouse and ``"76.1-K"`` in Piriod are one customer, not two.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from piriod.errors import ConfigError
from piriod.schema import writable_attributes

# Attributes that cannot identify a customer: objects, or the free tax_settings string.
UNMATCHABLE = {"country", "state", "metadata", "tax_settings"}
# List filters the sandbox (and, undocumented, the real API) may honour; always verified.
FILTERABLE = {"tax_id", "email"}

Key = tuple[str, str]  # (label, normalised value): ("id", "x1"), ("metadata.erp_id", "E-1")



@dataclass(frozen=True)
class KeySpec:
    """How records are matched when they carry no Piriod ``id``: ``match_field``."""

    field: str
    metadata_key: str | None = None

    @classmethod
    def parse(cls, match_field: str) -> KeySpec:
        """Parse ``id``, a writable attribute (``tax_id``, ``email``...) or ``metadata.<key>``."""
        name = (match_field or "id").strip()
        if name.startswith("metadata."):
            key = name.split(".", 1)[1]
            if not key:
                raise ConfigError("match_field 'metadata.' needs a key, e.g. metadata.erp_id")
            return cls("metadata", key)
        writable = writable_attributes()
        if name != "id" and (name not in writable or name in UNMATCHABLE):
            allowed = sorted(set(writable) - UNMATCHABLE)
            raise ConfigError(f"match_field {name!r} cannot identify a customer; use id, "
                              f"one of {allowed} or metadata.<key>")
        return cls(name)

    @property
    def label(self) -> str:
        """Return the setting's spelling, used in keys, messages and dead letters."""
        return f"metadata.{self.metadata_key}" if self.metadata_key else self.field

    def value_of(self, doc: dict) -> str | None:
        """Return the normalised key value of a record or a write-shape customer."""
        if self.metadata_key:
            return normalise_key_value((doc.get("metadata") or {}).get(self.metadata_key))
        return normalise_key_value(doc.get(self.field), lower=self.field == "email")

    def match_value(self, payload: dict) -> str | None:
        """Return the match key a payload sets (None when matching by ``id`` only)."""
        return None if self.field == "id" else self.value_of(payload)


def normalise_key_value(value: Any, *, lower: bool = False) -> str | None:
    """Return a key value as a trimmed string (None for empty); emails match case-blind."""
    if value is None or isinstance(value, dict | list):
        return None
    text = str(value).strip()
    if not text:
        return None
    return text.lower() if lower else text


def record_key(record: dict, spec: KeySpec) -> Key | None:
    """Return the key a record is matched by: its Piriod id if it has one, else match_field."""
    customer_id = normalise_key_value(record.get("id"))
    if customer_id:
        return ("id", customer_id)
    value = spec.match_value(record)
    return (spec.label, value) if value is not None else None
