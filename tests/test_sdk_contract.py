"""The private singer-sdk hooks the connectors override still exist, with the same shape.

singer-sdk is pinned (~=0.54.9), but an upgrade within the pin, or a deliberate bump,
could rename or reshape one of these. Each would then silently stop being called (the
override would no longer override anything): the tap would send ACTIVATE_VERSION before
its records again, or the target would emit STATE past unwritten records. These checks
fail first. The behaviour of each override is tested where it matters (the tap's fast
record path against the SDK's output in test_tap_fast_records.py; STATE and signals in
the target's tests).
"""

from __future__ import annotations

import inspect

import pytest
from singer_sdk import Stream, Target
from singer_sdk.batch import Batcher, lazy_chunked_generator
from singer_sdk.contrib.batch_encoder_jsonl import JSONLinesBatcher
from singer_sdk.sinks import BatchSink

from tap_piriod.streams import CustomersStream
from target_piriod.sinks import CustomersSink
from target_piriod.target import TargetPiriod

# (SDK class, hook, its parameters after self, the subclass of ours overriding it)
HOOKS = [
    (Stream, "_generate_record_messages", ["record"], CustomersStream),
    (Stream, "_write_activate_version_message", ["full_table_version"], CustomersStream),
    (Stream, "_write_replication_key_signpost", ["context", "value"], None),
    (Stream, "_sync_records", ["context", "write_messages"], CustomersStream),
    (Stream, "get_batches", ["batch_config", "context"], CustomersStream),
    (Target, "_process_record_message", ["message_dict"], TargetPiriod),
    (Target, "_process_schema_message", ["message_dict"], TargetPiriod),
    (Target, "_write_state_message", ["state"], None),
    (BatchSink, "_validate_and_parse", ["record"], CustomersSink),
    (BatchSink, "_singer_validate_message", ["record"], CustomersSink),
]


@pytest.mark.parametrize(("base", "name", "parameters", "ours"), HOOKS,
                         ids=[f"{hook[0].__name__}.{hook[1]}" for hook in HOOKS])
def test_the_hook_exists_with_the_same_parameters(base, name, parameters, ours):
    hook = getattr(base, name, None)
    assert callable(hook), f"singer-sdk no longer has {base.__name__}.{name}"
    assert list(inspect.signature(hook).parameters)[1:] == parameters
    if ours is not None:
        assert name in vars(ours) or any(name in vars(klass) for klass in ours.__mro__
                                         if klass.__module__.split(".")[0] != "singer_sdk")


def test_the_sdk_still_asks_about_activate_version_before_the_records():
    """The tap defers the SDK's ACTIVATE_VERSION; that only works if sync() sends it."""
    source = inspect.getsource(Stream.sync)
    assert "emit_activate_version_messages" in source
    assert "_write_activate_version_message" in source


def test_the_sdk_batches_as_tap_piriod_batches_assumes():
    """tap_piriod/batches.py replaces the SDK's JSONL batcher, keeping its files and order.

    Its get_batches reads the records as the SDK's does, names files as its
    JSONLinesBatcher does, and (like lazy_chunked_generator) announces a file after its
    last record; each BATCH message is followed by the stream's STATE.
    """
    assert "self._sync_records(context, write_messages=False)" in inspect.getsource(
        Stream.get_batches)
    batcher = inspect.getsource(JSONLinesBatcher.get_batches)
    assert 'sync_id = f"{self.tap_name}--{self.stream_name}-{uuid4()}"' in batcher
    assert 'filename = f"{prefix}{sync_id}-{i}.json.gz"' in batcher
    assert "gzip.GzipFile(fileobj=f" in batcher and "serialize_json(record)" in batcher
    assert "storage.get_url(filename)" in batcher
    assert Batcher.get_batcher("jsonl") is JSONLinesBatcher
    assert "list(itertools.islice(iterator, chunk_size))" in inspect.getsource(
        lazy_chunked_generator)
    sync_batches = inspect.getsource(Stream._sync_batches)
    assert sync_batches.index("_write_batch_message") < sync_batches.index(
        "_write_state_message")


def test_both_modes_go_through_sync_records():
    """tap_piriod/attributes.py tallies records in _sync_records, RECORD mode and BATCH."""
    assert "self._sync_records(context=context)" in inspect.getsource(Stream.sync)
    assert "self._sync_batches(batch_config, context=context)" in inspect.getsource(
        Stream.sync)


def test_the_target_keeps_its_sinks_where_ours_looks_for_them():
    target = TargetPiriod(config={"auth_token": "t", "api_url": "http://127.0.0.1:9"},
                          validate_config=True)
    assert isinstance(target._sinks_active, dict)
    assert isinstance(target._sinks_to_clear, list)
