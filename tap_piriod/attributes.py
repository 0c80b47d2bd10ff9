"""Attributes Piriod sends that the schema does not name: counted, and logged once per run.

Piriod can add a customer attribute at any time. The tap passes it through (the schema
keeps additional properties), but a loader that makes its columns from the SCHEMA message
(target-postgres, target-duckdb) drops it without a word. So the tap says it, once, at
the end of the stream's sync:

    Piriod sent 1 attribute the schema does not name: loyalty_tier (4,000 records). ...

Only top-level names are checked: nested objects (``metadata``, ``country``...) reach a
loader whole, as one JSON column, unknown keys and all.

The check is one set comparison per record, in C (``known.issuperset(record)``, three
times faster than ``record.keys() <= known``); only a record that fails it is looked at
further.
"""

from __future__ import annotations

import typing as t
from collections import Counter

from tap_piriod.mixin import StreamMixin

if t.TYPE_CHECKING:
    import logging
    from collections.abc import Generator, Iterable

    from singer_sdk.helpers.types import Context

README_SECTION = 'README, "New attributes"'


class UnknownAttributes:
    """Counts, per top-level name the schema does not list, the records that carried it."""

    def __init__(self, schema: dict) -> None:
        self.known = frozenset(schema.get("properties") or ())
        self.counts: Counter[str] = Counter()

    def observe(self, record: dict) -> None:
        """Count the record's names the schema does not list (if any)."""
        if not self.known.issuperset(record):
            self.counts.update(record.keys() - self.known)

    def summary(self) -> str | None:
        """Return the log line, or None when every name was known."""
        if not self.counts:
            return None
        names = sorted(self.counts, key=lambda name: (-self.counts[name], name))
        listed = ", ".join(f"{name} ({_records(self.counts[name])})" for name in names)
        noun = "attribute" if len(names) == 1 else "attributes"
        return (f"Piriod sent {len(names)} {noun} the schema does not name: {listed}. "
                "They are in the records, but loaders that make columns from the SCHEMA "
                "message (target-postgres, target-duckdb) drop them; see "
                f"{README_SECTION} to load them.")


def _records(count: int) -> str:
    return f"{count:,} record" + ("" if count == 1 else "s")


def tally(records: Iterable[dict], schema: dict,
          logger: logging.Logger) -> Generator[dict, t.Any, None]:
    """Yield ``records`` unchanged; once they are exhausted, log the unknown names seen."""
    unknown = UnknownAttributes(schema)
    fits = unknown.known.issuperset  # iterates the record's keys in C: ~0.5 us a record
    for record in records:
        if not fits(record):
            unknown.observe(record)
        yield record
    line = unknown.summary()
    if line:
        logger.warning(line)


class UnknownAttributeLog(StreamMixin):
    """Stream mixin: every record the stream syncs (RECORD or BATCH mode) goes by the tally.

    ``_sync_records`` is the SDK's (private) loop that both modes go through: RECORD mode
    writes each record from it, BATCH mode (``get_batches``) reads its records from it.
    """

    def _sync_records(self, context: Context | None = None, *,
                      write_messages: bool = True) -> Generator[dict, t.Any, None]:
        records = super()._sync_records(context, write_messages=write_messages)
        return tally(records, self.effective_schema, self.logger)
