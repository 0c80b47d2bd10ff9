"""The private singer-sdk names the connectors use still exist, with the same shape.

docs/architecture.md ("The singer-sdk surface") lists each one, why it is used, and the
public alternative where there is one; every entry of that list is pinned here.

singer-sdk is pinned (~=0.54.9), but an upgrade within the pin, or a deliberate bump,
could rename or reshape one of these. Each would then silently stop being called (the
override would no longer override anything): the tap would send ACTIVATE_VERSION before
its records again, or the target would emit STATE past unwritten records. These checks
fail first. The behaviour of each override is tested where it matters (the tap's fast
record path against the SDK's output in test_tap_fast_records.py; STATE and signals in
the target's tests).
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect

import pytest
from singer_sdk import Stream, Tap, Target
from singer_sdk.batch import Batcher, lazy_chunked_generator
from singer_sdk.contrib.batch_encoder_jsonl import JSONLinesBatcher
from singer_sdk.plugin_base import BaseSingerReader, PluginBase, _ConfigInput
from singer_sdk.singerlib.encoding.base import GenericSingerReader
from singer_sdk.sinks import BatchSink

from tap_piriod.streams import CustomersStream
from tap_piriod.tap import TapPiriod
from target_piriod.reader import InputReader
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


# The rest of the private surface listed in docs/architecture.md ("The singer-sdk surface"),
# pinned here so that each entry of that list fails a test when the SDK moves it.
# (SDK class, hook, its parameters after self, the class of ours overriding it)
MORE_HOOKS = [
    (Target, "_process_state_message", ["message_dict"], TargetPiriod),
    (Tap, "_handle_termination", ["signum", "frame"], TapPiriod),
    (Target, "_handle_termination", ["signum", "frame"], TargetPiriod),
    (GenericSingerReader, "_process_unknown_message", ["message_dict"], InputReader),
]


@pytest.mark.parametrize(("base", "name", "parameters", "ours"), MORE_HOOKS,
                         ids=[f"{hook[0].__name__}.{hook[1]}" for hook in MORE_HOOKS])
def test_more_hooks_exist_with_the_same_parameters(base, name, parameters, ours):
    test_the_hook_exists_with_the_same_parameters(base, name, parameters, ours)


def test_the_sdk_installs_handle_termination_as_the_signal_handler():
    """Both connectors replace the SDK's handler (which exits 0) by overriding this name."""
    source = inspect.getsource(PluginBase._setup_signal_handlers)
    assert "signal.SIGTERM, self._handle_termination" in source
    assert "signal.SIGINT, self._handle_termination" in source


def test_the_reader_sends_unknown_types_to_process_unknown_message():
    assert "self._process_unknown_message(" in inspect.getsource(GenericSingerReader.process_lines)


def test_the_target_still_listens_through_its_message_reader():
    """InputReader.process_lines reads the input through the signal Stopper: the SDK's
    listen (final) must still read through the message reader's process_lines, and end
    with process_endofpipe (where the target catches a signal that came last)."""
    assert "self.process_lines(file_input)" in inspect.getsource(BaseSingerReader.listen)
    assert "self.process_endofpipe()" in inspect.getsource(BaseSingerReader.listen)
    assert "self.message_reader.process_lines(" in inspect.getsource(
        BaseSingerReader.process_lines)
    hook = GenericSingerReader.process_lines
    assert list(inspect.signature(hook).parameters)[1:] == ["file_input", "callbacks"]
    assert "process_lines" in vars(InputReader)


def test_the_streams_private_attribute_the_tap_reads():
    """The streams read their table version (``_stream_version``); their tap they keep."""
    tap = TapPiriod(config={"auth_token": "t", "api_url": "http://127.0.0.1:9"})
    stream = tap.streams["customers"]
    assert stream.piriod_tap is tap  # our own reference, not the SDK's private ``_tap``
    assert "_stream_version" in vars(stream)
    assert callable(tap.message_writer.write_message)


def test_config_input_keeps_the_shape_target_test_reads():
    """``target-piriod --test`` reads the parsed ``--config`` (a private dataclass)."""
    assert [field.name for field in dataclasses.fields(_ConfigInput)] == ["config", "parse_env"]
    assert "_ConfigInput" in inspect.getsource(PluginBase.cb_config)


# Private helper functions imported from singer_sdk.helpers (by tap_piriod.fast_records):
# (module, name, its parameters)
PRIVATE_FUNCTIONS = [
    ("singer_sdk.helpers._catalog", "pop_deselected_record_properties",
     ["record", "schema", "mask", "breadcrumb"]),
    ("singer_sdk.helpers._typing", "conform_record_data_types",
     ["stream_name", "record", "schema", "level", "logger"]),
    ("singer_sdk.helpers._typing", "_conform_record_data_types",
     ["input_object", "schema", "level", "parent"]),
    ("singer_sdk.helpers._typing", "_conform_primitive_property",
     ["elem", "property_schema"]),
    ("singer_sdk.helpers._typing", "_is_exclusive_boolean_type", ["property_schema"]),
    ("singer_sdk.helpers._typing", "_warn_unmapped_properties",
     ["stream_name", "property_names", "logger"]),
    ("singer_sdk.helpers._typing", "is_object_type", ["property_schema"]),
    ("singer_sdk.helpers._typing", "is_uniform_list", ["property_schema"]),
]


@pytest.mark.parametrize(("module", "name", "parameters"), PRIVATE_FUNCTIONS,
                         ids=[f"{entry[0]}.{entry[1]}" for entry in PRIVATE_FUNCTIONS])
def test_the_private_helpers_exist_with_the_same_parameters(module, name, parameters):
    function = getattr(importlib.import_module(module), name, None)
    assert callable(function), f"singer-sdk no longer has {module}.{name}"
    assert list(inspect.signature(function).parameters) == parameters
