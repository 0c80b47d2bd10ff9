"""BATCH mode: the SDK's JSONL batch files, written record by record instead of list by list.

singer-sdk 0.54's ``Stream.get_batches`` hands the stream's records to its
``JSONLinesBatcher``, which gathers ``batch_size`` records (10,000 by default) in a list,
encodes each with simplejson and gzips the lot at compression level 9. For the tap that
meant 1.6 to 3.3 times the wall time of RECORD mode and 2.3 times its memory
(docs/benchmarks.md).

:class:`FastBatches` writes the same files, named the same way, through the same
``batch_config.storage``, and yields the same manifests at the same moments (a file is
closed and announced after its ``batch_size``-th record, before the next one is read, as
the SDK's ``lazy_chunked_generator`` does). Only the way the bytes are made differs:

* each record is encoded by :func:`tap_piriod.output.encode_message` (orjson, falling
  back to the SDK's encoder for anything orjson would render differently), the encoder
  of the tap's RECORD messages;
* encoded lines are gathered up to ``FLUSH_BYTES`` and then compressed, so memory stays
  flat whatever the batch size;
* gzip runs at ``GZIP_LEVEL`` (chosen by measurement, see docs/benchmarks.md) instead of 9:
  the files are read once, by a loader on the same disk or network, and level 9 makes
  them 23% smaller for 6 times the CPU.

As with the SDK, the files hold the stream's records as ``get_records``/``post_process``
give them (no type conformance, no stream maps: those apply to RECORD messages only), and
a JSONL file is gzipped whatever ``encoding.compression`` says (the SDK's batcher does
not read it either; readers, the SDK's included, gunzip when it says ``gzip``, so
configure ``compression: gzip``). Other formats (parquet), or a ``jsonl`` batcher that is
not the SDK's own, go to the SDK unchanged.
"""

from __future__ import annotations

import gzip
import itertools
import typing as t
from uuid import uuid4

from singer_sdk.batch import Batcher
from singer_sdk.contrib.batch_encoder_jsonl import JSONLinesBatcher

from tap_piriod.mixin import StreamMixin
from tap_piriod.output import encode_message

if t.TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

    from singer_sdk.helpers._batch import BaseBatchFileEncoding, BatchConfig
    from singer_sdk.helpers.types import Context

GZIP_LEVEL = 1
FLUSH_BYTES = 1 << 18
_END = object()


def write_jsonl_batches(records: Iterable[dict], batch_config: BatchConfig, tap_name: str,
                        stream_name: str) -> Iterator[list[str]]:
    """Write ``records`` to gzipped JSONL files of ``batch_size`` lines; yield each manifest.

    Names, storage and URLs are those of the SDK's ``JSONLinesBatcher``:
    ``<prefix><tap>--<stream>-<uuid>-<n>.json.gz`` under ``storage.root``.
    """
    sync_id = f"{tap_name}--{stream_name}-{uuid4()}"
    storage = batch_config.storage
    prefix = storage.prefix or ""
    size = batch_config.batch_size
    records = iter(records)
    for number in itertools.count(1):
        first = next(records, _END)
        if first is _END:  # no record left: no (empty) file, as the SDK
            return
        filename = f"{prefix}{sync_id}-{number}.json.gz"
        with (storage.open(filename, "wb") as raw,
              gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=GZIP_LEVEL) as gz):
            # ``first`` is a record here (not _END), which mypy cannot tell.
            _write_lines(gz, first, itertools.islice(records, size - 1))  # type: ignore[arg-type]
        yield [storage.get_url(filename)]


def _write_lines(gz: gzip.GzipFile, first: dict, rest: Iterable[dict]) -> None:
    """Encode records one per line, compressing every ``FLUSH_BYTES`` of lines."""
    pending = bytearray(encode_message(first))
    for record in rest:
        pending += encode_message(record)
        if len(pending) >= FLUSH_BYTES:
            gz.write(pending)
            pending.clear()
    gz.write(pending)


class FastBatches(StreamMixin):
    """Stream mixin: singer-sdk 0.54's ``Stream.get_batches``, streaming JSONL files.

    ``get_batches`` is the SDK's documented hook for custom batching; this one reads the
    records exactly as the SDK's does (``_sync_records(context, write_messages=False)``,
    which keeps bookmarks and counters) and writes them with :func:`write_jsonl_batches`.
    """

    def _write_activate_version_message(self, full_table_version: int) -> None:
        """Send ACTIVATE_VERSION in RECORD mode only.

        A loader retires every row whose table version is older than the one activated,
        or has none; BATCH files carry no version (the SDK writes records, not messages),
        so after a BATCH read every row, those just loaded included, would be marked
        deleted (target-postgres). Deletions need a full read in RECORD mode (the
        reconcile job); in BATCH mode the tap says so and sends nothing.
        """
        if self.get_batch_config(self.config):
            self.logger.warning(
                "Not sending ACTIVATE_VERSION: this full read was written as BATCH files, "
                "whose records carry no table version, so a loader would retire every "
                "row. Customers deleted in Piriod are retired by a full read in RECORD "
                "mode (batch_config unset), as the reconcile job does.")
            return
        super()._write_activate_version_message(full_table_version)

    def get_batches(self, batch_config: BatchConfig, context: Context | None = None,
                    ) -> Iterator[tuple[BaseBatchFileEncoding, list[str]]]:
        """Yield (encoding, manifest) for each file, as the SDK's ``get_batches``."""
        encoding = batch_config.encoding
        if Batcher.get_batcher(encoding.format) is not JSONLinesBatcher:
            yield from super().get_batches(batch_config, context)
            return
        records = self._sync_records(context, write_messages=False)
        for manifest in write_jsonl_batches(records, batch_config, self.tap_name,
                                            self.name):
            yield encoding, manifest
