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
from singer_sdk.sinks import BatchSink

from tap_piriod.streams import CustomersStream
from target_piriod.sinks import CustomersSink
from target_piriod.target import TargetPiriod

# (SDK class, hook, its parameters after self, the subclass of ours overriding it)
HOOKS = [
    (Stream, "_generate_record_messages", ["record"], CustomersStream),
    (Stream, "_write_activate_version_message", ["full_table_version"], CustomersStream),
    (Stream, "_write_replication_key_signpost", ["context", "value"], None),
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


def test_the_target_keeps_its_sinks_where_ours_looks_for_them():
    target = TargetPiriod(config={"auth_token": "t", "api_url": "http://127.0.0.1:9"},
                          validate_config=True)
    assert isinstance(target._sinks_active, dict)
    assert isinstance(target._sinks_to_clear, list)
