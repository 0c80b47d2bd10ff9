"""Building RECORD messages faster, with the SDK's own (private) conformance rules.

Each function here replaces an SDK routine that costs measurably more (the figures are
in docs/benchmarks.md), and tests/test_tap_fast_records.py compares its output with the
SDK routine it replaces on varied input, so an SDK upgrade that changes behaviour fails
a test rather than a customer's sync.

The SDK's record conformance is compiled once per schema instead of re-read per value.

``singer_sdk.helpers._typing.conform_record_data_types`` (RECURSIVE level) walks the
schema for every value of every record, once the largest single cost of the tap.
:class:`RecordConformer` does the same walk with the schema questions
(``is_uniform_list``, ``is_object_type``, ``_is_exclusive_boolean_type``...) answered
once, when it is built. It gives the same result:

* properties missing from the schema are kept if ``additionalProperties`` is truthy,
  otherwise dropped and reported through the SDK's own (once-per-set) warning;
* lists with a single ``items`` schema and objects with ``properties`` are conformed
  recursively, with the SDK's own rules;
* a primitive value of a JSON type (str, int, bool, None, dict, list) is returned as is
  unless its schema is exclusively boolean; a float or Decimal is returned as is unless
  NaN or infinite (then None); every other value (datetimes, bytes..., and JSON values
  under an exclusively boolean schema) goes to the SDK's ``_conform_primitive_property``.

Anything the compiler does not understand is handed to the SDK's function.
``FastRecordMessages`` is the stream mixin that uses it (see its docstring).
"""

from __future__ import annotations

import typing as t
from datetime import datetime, timezone
from decimal import Decimal
from math import isinf, isnan

from singer_sdk import singerlib as singer
from singer_sdk.helpers._catalog import pop_deselected_record_properties
from singer_sdk.helpers._typing import (
    _conform_primitive_property,
    _conform_record_data_types,
    _is_exclusive_boolean_type,
    _warn_unmapped_properties,
    conform_record_data_types,
    is_object_type,
    is_uniform_list,
)
from singer_sdk.helpers.conform import TypeConformanceLevel

from tap_piriod.mixin import StreamMixin

if t.TYPE_CHECKING:
    import logging

    from singer_sdk.helpers.types import Record

# Exact types a non-boolean primitive schema leaves untouched (see _conform_primitive_property:
# none of them is a datetime, date, timedelta, time, bytes, float or Decimal).
_UNCHANGED: frozenset[type] = frozenset({str, int, bool, type(None), dict, list})
# Exact types _conform_primitive_property turns into None when NaN or infinite, whatever
# the schema (it tests them before the boolean rule).
_NUMBERS: frozenset[type] = frozenset({float, Decimal})
_RECURSIVE = TypeConformanceLevel.RECURSIVE


class _ItemPlan(t.NamedTuple):
    """The ``items`` schema of a uniform list, its questions answered."""

    is_object: bool  # is_object_type(schema)
    schema: dict
    plan: _ObjectPlan | None  # set when is_object and the schema has ``properties``
    boolean: bool  # _is_exclusive_boolean_type(schema)


class _PropertyPlan(t.NamedTuple):
    """One property schema, its questions answered (unpacked by position when conforming)."""

    uniform: bool  # is_uniform_list(schema): a list with a single ``items`` schema
    obj: bool  # an object schema with ``properties``
    boolean: bool  # _is_exclusive_boolean_type(schema)
    schema: dict
    items: _ItemPlan | None  # set when uniform
    sub: _ObjectPlan | None  # set when obj


class _ObjectPlan:
    """An object schema (one with ``properties``), its questions answered."""

    __slots__ = ("additional", "properties", "schema")

    def __init__(self, schema: dict) -> None:
        self.schema = schema
        self.additional = bool(schema.get("additionalProperties"))
        self.properties: dict[str, _PropertyPlan] = {
            name: _property_plan(prop) for name, prop in schema["properties"].items()
        }


def _property_plan(schema: dict) -> _PropertyPlan:
    """Answer, once, the questions the SDK asks of ``schema`` for every value."""
    # The same questions, in the same order, as _conform_record_data_types asks them.
    uniform = bool(is_uniform_list(schema))
    obj = bool(is_object_type(schema)) and "properties" in schema
    boolean = bool(_is_exclusive_boolean_type(schema))
    items = None
    if uniform:
        item_schema = schema["items"]
        item_object = bool(is_object_type(item_schema))
        items = _ItemPlan(item_object, item_schema,
                          _ObjectPlan(item_schema)
                          if item_object and "properties" in item_schema else None,
                          bool(_is_exclusive_boolean_type(item_schema)))
    return _PropertyPlan(uniform, obj, boolean, schema, items,
                         _ObjectPlan(schema) if obj else None)


def _keeps_json(plan: _ObjectPlan | None) -> bool:
    """Tell whether conforming JSON values (no NaN, no infinity) to ``plan`` changes nothing.

    True when every object of the schema keeps properties it does not list
    (``additionalProperties``) and no property is exclusively boolean: the only things
    the SDK's conformance would then do to a parsed JSON document are to NaNs and
    infinities, which a JSON parser that refuses them never produces.
    """
    if plan is None or not plan.additional:
        return False
    for _uniform, _obj, boolean, _schema, items, sub in plan.properties.values():
        if boolean or (sub is not None and not _keeps_json(sub)):
            return False
        if items is not None:
            item_object, _item_schema, item_plan, item_boolean = items
            if item_boolean or (item_object and not _keeps_json(item_plan)):
                return False
    return True


class RecordConformer:
    """Conform records to one schema, as the SDK's RECURSIVE conformance does."""

    def __init__(self, schema: dict) -> None:
        self.schema = schema
        try:
            self._plan: _ObjectPlan | None = _ObjectPlan(schema)
        except Exception:  # a schema the SDK may reject later, per value
            self._plan = None  # leave it to the SDK, errors and all
        self.keeps_json = _keeps_json(self._plan)

    def conform(self, record: dict, stream_name: str, logger: logging.Logger) -> dict:
        """Return the conformed record (a new dict), warning once about unmapped properties."""
        if self._plan is None:
            return conform_record_data_types(stream_name=stream_name, record=record,
                                             schema=self.schema, level=_RECURSIVE,
                                             logger=logger)
        unmapped: list[str] = []
        result = _conform_object(record, self._plan, None, unmapped)
        if unmapped:
            _warn_unmapped_properties(stream_name, tuple(unmapped), logger)
        return result


def conform_record(conformer: RecordConformer | None, record: dict, schema: dict,
                   level: TypeConformanceLevel, stream_name: str,
                   logger: logging.Logger) -> tuple[dict, RecordConformer | None]:
    """Conform ``record`` as the SDK would, reusing ``conformer`` if built for ``schema``.

    Returns the record and the conformer to pass next time. Levels other than RECURSIVE
    go to the SDK's function.
    """
    if level is not _RECURSIVE:
        return conform_record_data_types(stream_name=stream_name, record=record,
                                         schema=schema, level=level, logger=logger), conformer
    if conformer is None or conformer.schema is not schema:
        conformer = RecordConformer(schema)
    return conformer.conform(record, stream_name, logger), conformer


def _conform_object(record: dict, plan: _ObjectPlan, parent: str | None,
                    unmapped: list[str]) -> dict:
    output: dict[str, t.Any] = {}
    properties = plan.properties
    for name, elem in record.items():
        prop = properties.get(name)
        if prop is None:
            if plan.additional:
                output[name] = elem
            else:
                unmapped.append(name if parent is None else f"{parent}.{name}")
            continue
        _uniform, _obj, boolean, schema, items, sub = prop
        kind = elem.__class__
        if items is not None and isinstance(elem, list):  # items: set for uniform lists
            path = name if parent is None else f"{parent}.{name}"
            output[name] = _conform_list(elem, items, path, unmapped)
        elif sub is not None and isinstance(elem, dict):  # sub: set for objects
            path = name if parent is None else f"{parent}.{name}"
            output[name] = _conform_object(elem, sub, path, unmapped)
        elif not boolean and kind in _UNCHANGED:
            output[name] = elem
        elif kind in _NUMBERS:  # as _conform_primitive_property: NaN and infinities are None
            output[name] = None if isnan(elem) or isinf(elem) else elem
        else:
            output[name] = _conform_primitive_property(elem, schema)
    return output


def _conform_list(elements: list[t.Any], items: _ItemPlan, path: str, unmapped: list[str]) -> list:
    item_object, item_schema, item_plan, boolean = items
    output: list[t.Any] = []
    for item in elements:
        if item_object and isinstance(item, dict):
            if item_plan is not None:
                output.append(_conform_object(item, item_plan, path, unmapped))
            else:  # an object schema without properties: the SDK's own handling
                conformed, sub_unmapped = _conform_record_data_types(
                    item, item_schema, _RECURSIVE, path)
                unmapped.extend(sub_unmapped)
                output.append(conformed)
        elif not boolean and item.__class__ in _UNCHANGED:
            output.append(item)
        elif item.__class__ in _NUMBERS:  # a float or Decimal, which mypy cannot tell here
            output.append(None if isnan(item) or isinf(item) else item)  # type: ignore[arg-type]
        else:
            output.append(_conform_primitive_property(item, item_schema))
    return output


class FastRecordMessages(StreamMixin):
    """Stream mixin: ``_generate_record_messages`` as singer-sdk 0.54's ``Stream``, faster.

    Same steps and results: drop deselected properties, conform types to the schema,
    apply stream maps. Two shortcuts: with every property selected (the default) the
    deselection walk, which could remove nothing, is skipped; conformance uses a
    :class:`RecordConformer` compiled once for the schema, and is skipped altogether for
    a stream that declares ``records_are_json`` when the schema keeps parsed JSON as it
    is (``_keeps_json``).
    """

    _conformer: RecordConformer | None = None
    _mask_seen: object = None
    _all_selected: bool = False
    # A stream whose records are parsed JSON (no NaN or infinity: the parser refuses
    # them) skips conformance when the schema keeps such records as they are.
    records_are_json: bool = False

    def _generate_record_messages(self, record: Record,
                                  ) -> t.Generator[singer.RecordMessage, None, None]:
        schema = self.effective_schema
        mask = self.mask
        if mask is not self._mask_seen:
            self._mask_seen, self._all_selected = mask, all(mask.values())
        if not self._all_selected:
            pop_deselected_record_properties(record, self.schema, mask)
        conformer = self._conformer
        if not (self.records_are_json and conformer is not None and conformer.keeps_json
                and conformer.schema is schema
                and self.TYPE_CONFORMANCE_LEVEL is _RECURSIVE):
            record, self._conformer = conform_record(
                conformer, record, schema, self.TYPE_CONFORMANCE_LEVEL, self.name,
                self.logger)
        for stream_map in self.stream_maps:
            mapped_record = stream_map.transform(record)
            if mapped_record is not None:  # None: filtered out by the map
                yield singer.RecordMessage(
                    stream=stream_map.stream_alias,
                    record=mapped_record,
                    version=self._stream_version,
                    time_extracted=datetime.now(timezone.utc),
                )
