"""The customers sink: batches records and hands each batch to the run's Loader."""

from __future__ import annotations

import typing as t

from singer_sdk.sinks import BatchSink

if t.TYPE_CHECKING:
    from collections.abc import Sequence

    from singer_sdk import Target
    from singer_sdk.sinks.core import BaseJSONSchemaValidator

    from target_piriod.loader import Loader


class CustomersSink(BatchSink):
    """Upserts ``customers`` records into Piriod, a batch (500, or batch_size_rows) at a time.

    A bounded batch keeps memory flat and lets STATE advance during long loads; the
    writes inside a batch run concurrently in the Loader, and ``process_batch`` returns
    once the previous batch's writes are written or dead-lettered (this one's are then
    written while the next batch is read; a STATE after them waits until they are:
    ``target_piriod.states``).
    """

    MAX_SIZE_DEFAULT = 500

    def __init__(self, target: Target, stream_name: str, schema: dict,
                 key_properties: Sequence[str] | None) -> None:
        super().__init__(target, stream_name, schema, key_properties)
        # The SDK types target as Target; it is our TargetPiriod, which has the loader.
        self._loader: Loader = target.loader  # type: ignore[attr-defined]

    def get_validator(self) -> BaseJSONSchemaValidator | None:
        """Skip the SDK's validation against the tap's schema.

        Records are validated against Piriod's write schema in the Loader instead, and a
        record that fails goes to the dead-letter file: the SDK would stop the run.
        """
        return None

    def _validate_and_parse(self, record: dict) -> dict:
        """Keep values as the tap sent them (no date parsing: we send JSON back out)."""
        return record

    def _singer_validate_message(self, record: dict) -> None:
        """Do not require the tap's key_properties: records are matched by id/match_field.

        A source keyed by ``id`` legitimately sends new customers without one (matched by
        ``match_field``); a record that has no usable key at all is dead-lettered by the
        Loader with reason ``missing_key`` instead of stopping the whole load.
        """

    def process_batch(self, context: dict) -> None:
        """Start writing a batch; return once the previous batch is fully written."""
        merged = self._loader.load(context.get("records", []))
        if merged:
            self.tally_duplicate_merged(merged)
