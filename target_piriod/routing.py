"""Which stream goes where: ``customers`` to its sink, Meltano's test stream to a check.

The target loads one stream. Any other reaching it unmapped is refused with the
``stream_maps`` that would map or drop it: loading it as customers would write rows
that are not customers into a billing system. ``meltano config test`` sends
``meltano_test_stream`` and asks loaders to write its test record; no fake customer goes
to a billing system, so that stream runs the connection test instead
(``target_piriod.connection_test``), unless ``stream_maps`` name it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import click
from singer_sdk.mapper import PluginMapper, RemoveRecordTransform

STREAM = "customers"
# What `meltano config test target-piriod` sends (Meltano 4: SCHEMA, RECORD, STATE).
MELTANO_TEST_STREAM = "meltano_test_stream"


class UnknownStreamError(click.ClickException):
    """A stream other than ``customers`` reached the target unmapped."""


def dropped_by_maps(mapper: PluginMapper, stream_name: str) -> bool:
    """Tell whether ``stream_maps`` drop a stream (``{"<stream>": null}``)."""
    maps = mapper.stream_maps.get(stream_name) or []
    return bool(maps) and all(isinstance(m, RemoveRecordTransform) for m in maps)


def check_stream(mapper: PluginMapper, stream_name: str) -> None:
    """Accept ``customers`` or a dropped stream; refuse any other loudly."""
    if stream_name == STREAM or dropped_by_maps(mapper, stream_name):
        return
    raise UnknownStreamError(
        f"target-piriod loads only the '{STREAM}' stream, got '{stream_name}'. Map it "
        f'with stream_maps, e.g. {{"stream_maps": {{"{stream_name}": '
        f'{{"__alias__": "{STREAM}"}}}}}}, or drop it with {{"{stream_name}": null}}.')


def is_meltano_test(stream_name: object, config: Mapping[str, Any]) -> bool:
    """Tell whether a stream is Meltano's test stream (unless stream_maps map it)."""
    return stream_name == MELTANO_TEST_STREAM and \
        stream_name not in (config.get("stream_maps") or {})
