"""The tap's shortcuts through private SDK code give what the SDK routines they replace give.

If an SDK upgrade changes how records are conformed or messages built, these fail, rather
than a customer's sync silently differing from what the SDK would have written.
"""

from __future__ import annotations

import copy
import datetime
import decimal
import logging

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from singer_sdk.helpers._typing import conform_record_data_types
from singer_sdk.helpers.conform import TypeConformanceLevel
from singer_sdk.streams.core import Stream

from piriod.schema import load_customers_schema
from tap_piriod.fast_records import RecordConformer, conform_record
from tap_piriod.tap import TapPiriod

SCHEMA = load_customers_schema()
LOGGER = logging.getLogger("test")
LEVEL = TypeConformanceLevel.RECURSIVE

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.text(max_size=8),
    st.floats(allow_nan=True, allow_infinity=True),
    # What the client's JSON parser can produce: no signalling NaN (it cannot be compared).
    st.decimals(allow_nan=False, allow_infinity=True, places=2),
    st.just(decimal.Decimal("NaN")),
    st.datetimes(timezones=st.just(datetime.timezone.utc)),
)
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=5), inner, max_size=3)),
    max_leaves=8)
names = st.sampled_from([*SCHEMA["properties"], "not_in_schema", "extra"])
records = st.dictionaries(names, values, max_size=12)
# What piriod.client's parser yields: JSON types, fractions as finite Decimals.
json_scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=8),
                         st.decimals(allow_nan=False, allow_infinity=False, places=3))
json_values = st.recursive(json_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=5), inner, max_size=3)),
    max_leaves=8)
json_records = st.dictionaries(names, json_values, max_size=12)


def nan_safe(value: object) -> object:
    """Make NaN comparable (NaN != NaN), keeping everything else as it is."""
    if isinstance(value, float | decimal.Decimal) and value != value:
        return "NaN"
    if isinstance(value, dict):
        return {key: nan_safe(item) for key, item in value.items()}
    if isinstance(value, list):
        return [nan_safe(item) for item in value]
    return value


@settings(max_examples=300, deadline=None)
@given(records)
def test_conformance_equals_the_sdks(record):
    expected = conform_record_data_types(stream_name="customers", record=copy.deepcopy(record),
                                         schema=SCHEMA, level=LEVEL, logger=LOGGER)
    ours, _ = conform_record(None, copy.deepcopy(record), SCHEMA, LEVEL, "customers", LOGGER)
    assert nan_safe(ours) == nan_safe(expected)


def test_conformance_of_a_real_customer_shape():
    record = {"id": "c1", "name": "X", "country": {"id": "CL", "name": "Chile"},
              "aggregations": {"balance": decimal.Decimal("12.30")}, "contacts": [{"a": 1}],
              "metadata": {"k": float("nan")}, "unknown": 1,
              "updated": "2026-01-01T00:00:00+00:00"}
    expected = conform_record_data_types(stream_name="customers", record=copy.deepcopy(record),
                                         schema=SCHEMA, level=LEVEL, logger=LOGGER)
    ours, _ = conform_record(None, copy.deepcopy(record), SCHEMA, LEVEL, "customers", LOGGER)
    assert nan_safe(ours) == nan_safe(expected)


def test_the_customers_schema_keeps_parsed_json_as_it_is():
    """So the stream skips conformance; a schema that would change JSON does not."""
    assert RecordConformer(SCHEMA).keeps_json
    closed = copy.deepcopy(SCHEMA)
    closed["properties"]["country"]["additionalProperties"] = False
    assert not RecordConformer(closed).keeps_json
    flagged = copy.deepcopy(SCHEMA)
    flagged["properties"]["active"] = {"type": "boolean"}
    assert not RecordConformer(flagged).keeps_json


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(json_records, min_size=1, max_size=5), st.booleans())
def test_record_messages_equal_the_sdks(batch, deselect):
    tap = TapPiriod(config={"auth_token": "t", "api_url": "http://127.0.0.1:9"},
                    validate_config=True)
    stream = tap.streams["customers"]
    if deselect:  # the deselection walk the fast path skips when everything is selected
        stream.mask[("properties", "email")] = False
    for record in batch:
        ours = [m.to_dict() for m in stream._generate_record_messages(copy.deepcopy(record))]
        sdk = [m.to_dict() for m in Stream._generate_record_messages(stream,
                                                                     copy.deepcopy(record))]
        for message in ours + sdk:
            message.pop("time_extracted", None)
        assert nan_safe(ours) == nan_safe(sdk)
