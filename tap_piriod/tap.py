"""``tap-piriod``: the Singer tap for Piriod."""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import typing as t

import click
from singer_sdk import Tap
from singer_sdk import typing as th
from singer_sdk.exceptions import ConfigValidationError, FatalAPIError, MappingError
from singer_sdk.plugin_base import _ConfigInput

from piriod.client import PiriodClient
from piriod.errors import ConfigError, PiriodError
from piriod.settings import (
    DEFAULT_API_URL,
    check_api_url,
    clean_token,
    read_config_files,
    setting,
    user_agent,
)
from piriod.signals import say
from tap_piriod.output import FastSingerWriter
from tap_piriod.streams import STREAMS, PiriodStream, parse_instant

if t.TYPE_CHECKING:
    from collections.abc import Iterator
    from types import FrameType

NAME = "tap-piriod"


class TapPiriod(Tap):
    """Extracts Piriod customers, incrementally by their ``updated`` time."""

    name = NAME
    package_name = "piriod-singer"
    # Same messages as the SDK's writer, encoded faster (see tap_piriod/output.py).
    message_writer_class = FastSingerWriter

    config_jsonschema = th.PropertiesList(
        th.Property("auth_token", th.StringType, required=True, secret=True,
                    title="Auth token",
                    description="Piriod API token, sent as `Authorization: Bearer <token>`."),
        th.Property("api_url", th.StringType, default=DEFAULT_API_URL,
                    title="API URL", description="Root of the Piriod API (https; plain http "
                                                 "only to this machine, e.g. the sandbox)."),
        th.Property("start_date", th.DateTimeType, title="Start date",
                    description="Only customers updated at or after this instant on the first "
                                "run; later runs resume from the bookmark in the state."),
        th.Property("lookback_window", th.IntegerType(minimum=0), default=300,
                    title="Lookback window",
                    description="Seconds before the bookmark that each incremental run "
                                "reads again, for rows committed after a later bookmark was "
                                "saved (size it to the account's longest write transaction). "
                                "Customers already delivered are not emitted again."),
        th.Property("emit_activate_version_messages", th.BooleanType, default=True,
                    title="Emit ACTIVATE_VERSION",
                    description="In FULL_TABLE mode, stamp records with a table version and "
                                "emit ACTIVATE_VERSION after the last record of a complete "
                                "read, so that a loader honouring it removes the rows of "
                                "customers deleted in Piriod."),
        th.Property("page_size", th.IntegerType(minimum=1, maximum=100), default=100,
                    title="Page size", description="Customers per list request (1 to 100)."),
        th.Property("max_workers", th.IntegerType(minimum=1, maximum=32), default=4,
                    title="Max workers",
                    description="List pages fetched at once when the API numbers its pages "
                                "(1 reads one page at a time)."),
        th.Property("country_name", th.StringType, title="Country name",
                    description="Only customers of this country (the API's `country__name` "
                                "filter), e.g. `Chile`."),
        th.Property("user_agent", th.StringType, title="User agent",
                    description="User-Agent header sent to the API (default: "
                                "tap-piriod/<version>)."),
        # The SDK annotates ``minimum`` as int; JSON Schema takes any number, as we mean.
        th.Property("request_timeout", th.NumberType(minimum=0.1),  # type: ignore[arg-type]
                    default=30,
                    title="Request timeout",
                    description="Seconds to wait for a connection or a response before "
                                "retrying the request."),
        th.Property("max_retries", th.IntegerType(minimum=0), default=5, title="Max retries",
                    description="Retries of a request after 5xx, timeouts, dropped "
                                "connections or unreadable bodies, with exponential backoff "
                                "(429s wait what `Retry-After` asks, capped at 300 s, and "
                                "have a larger budget)."),
    ).to_dict()

    def __init__(self, *args: t.Any, **kwargs: t.Any) -> None:
        self.stop_signal: int | None = None
        self._clients: list[PiriodClient] = []
        super().__init__(*args, **kwargs)

    def _validate_config(self, *, raise_errors: bool = True) -> list[str]:
        """Check the settings a sync needs, with their names and an example; not for discovery.

        Discovery (``--discover``, ``meltano select --list``) only lists the stream and
        its schema, which need no API call: it runs without a token (the SDK validates
        nothing then, and its "Config validation failed" warning would only confuse).
        """
        if not raise_errors:
            return []
        try:
            clean_token(self.config.get("auth_token"), NAME)
            check_api_url(self.config.get("api_url") or DEFAULT_API_URL)
            start = self.config.get("start_date")
            if start is not None:
                _check_start_date(start)
        except ConfigError as error:
            raise ConfigValidationError(str(error), errors=[str(error)]) from error
        return super()._validate_config(raise_errors=raise_errors)

    @classmethod
    def invoke(cls, **kwargs: t.Any) -> None:
        """Run the tap; an expected failure ends it with its message alone (``ended``)."""
        with ended():
            for option in ("state", "catalog"):
                kwargs[option] = _checked_json(option, kwargs.get(option))
            super().invoke(**kwargs)

    @classmethod
    def cb_test(cls, ctx: click.Context, param: click.Option, value: str) -> None:
        """Run ``--test`` as the SDK does, ending an expected failure with its message."""
        with ended():
            super().cb_test(ctx, param, value)

    @classmethod
    def cb_config(cls, ctx: click.Context, param: click.Option,
                  value: tuple[str, ...]) -> _ConfigInput:
        """Read ``--config``; a missing or broken file is one message, not a traceback."""
        with ended():
            config, parse_env = read_config_files(value)
        return _ConfigInput(config=config, parse_env=parse_env)

    def piriod_client(self) -> PiriodClient:
        """Return a client for the configured API (one per stream sync)."""
        client = PiriodClient(
            check_api_url(self.config.get("api_url") or DEFAULT_API_URL),
            clean_token(self.config.get("auth_token")),
            timeout=float(setting(self.config, "request_timeout", 30)),
            max_retries=int(setting(self.config, "max_retries", 5)),
            user_agent=self.config.get("user_agent") or user_agent(NAME),
            pool_size=int(self.config.get("max_workers") or 1), decimals=True,
            logger=self.logger)
        self._clients.append(client)
        return client

    # -- signals -------------------------------------------------------------------------

    def _handle_termination(self, signum: int, frame: FrameType | None) -> None:
        """Stop at the next page boundary: no torn line, no STATE, exit 128 + signal.

        The SDK's handler writes a STATE and exits 0 from wherever the signal lands, in
        the middle of a line of output if need be. Here the first signal only asks the
        stream to stop once the page being written is whole (waits and retries give up
        at once); a second one exits at once. Either way the bookmark does not move: it
        only moves at the end of a complete read. The handler writes its line to file
        descriptor 2 directly: ``sys.stderr``'s buffer may be held by the very code the
        signal interrupted (a log line), and writing to it again would raise there.
        """
        name = signal.Signals(signum).name
        if self.stop_signal is not None:
            say(f"{NAME}: second {name}: exiting now; the bookmark did not move\n")
            os._exit(128 + signum)
        self.stop_signal = signum
        say(f"{NAME}: {name} received: stopping after the page being written; the "
             "bookmark will not move\n")
        for client in self._clients:
            client.stop()

    def check_stop(self, emitted: int) -> None:
        """Raise ``StoppedBySignal`` if a signal asked the run to stop."""
        if self.stop_signal is not None:
            raise StoppedBySignal(self.stop_signal, emitted)

    def discover_streams(self) -> list[PiriodStream]:
        """Return the tap's streams (``tap_piriod.streams.STREAMS``)."""
        return [stream(self) for stream in STREAMS]


@contextlib.contextmanager
def ended() -> Iterator[None]:
    """End an expected failure (settings, the API, its data) with its message alone.

    The message names what failed (setting, request, page) and what to do; a traceback
    would add nothing for the person running the tap, and would quote the exception
    chain, whose inner messages were not all redacted. Bugs still show their traceback.
    """
    try:
        yield
    except ConfigValidationError as error:
        raise click.ClickException("; ".join(error.errors) or str(error)) from None
    except (FatalAPIError, PiriodError) as error:
        raise click.ClickException(str(error)) from None
    except MappingError as error:  # a stream map the SDK cannot apply
        raise click.ClickException(f"stream_maps: {error} (see "
                                   "https://sdk.meltano.com/en/latest/stream_maps.html)") from None


def _checked_json(option: str, file: t.IO[str] | None) -> t.IO[str] | None:
    """Return a ``--state``/``--catalog`` file unread if it holds a JSON object, else refuse it.

    The SDK would end a broken file with a traceback from its JSON parser.
    """
    if file is None:
        return None
    text = file.read()
    name = getattr(file, "name", option)
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise ConfigError(f"--{option} file {name!r} is not valid JSON ({error.msg} at line "
                          f"{error.lineno}, column {error.colno}): fix it, or leave --{option} "
                          "out") from None
    if not isinstance(value, dict):
        raise ConfigError(f"--{option} file {name!r} must hold a JSON object")
    return io.StringIO(text)


class StoppedBySignal(click.ClickException):
    """The run stopped on a signal, between pages; exits 128 + the signal's number."""

    def __init__(self, signum: int, emitted: int) -> None:
        super().__init__(f"stopped by {signal.Signals(signum).name} after {emitted} records "
                         "(every one written whole); the bookmark did not move, so the "
                         "next run reads them again")
        # click declares exit_code a ClassVar but reads it from the instance: ours
        # depends on the signal.
        self.exit_code = 128 + signum  # type: ignore[misc]


def _check_start_date(value: object) -> None:
    """Refuse a start_date that is not an ISO 8601 date-time, with an example."""
    try:
        parse_instant(str(value))
    except ValueError:
        raise ConfigError(f"start_date {str(value)[:40]!r} is not an ISO 8601 date-time; "
                          "e.g. 2024-01-01T00:00:00Z") from None


if __name__ == "__main__":
    TapPiriod.cli()
