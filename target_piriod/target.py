"""target-piriod: upserts customer records into Piriod (reverse ETL), idempotently."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import uuid
from collections.abc import Iterator
from decimal import Decimal
from functools import cached_property
from types import FrameType
from typing import Any, ClassVar, NoReturn

import click
from singer_sdk import Target
from singer_sdk.exceptions import (
    ConfigValidationError,
    MappingError,
    RecordsWithoutSchemaException,
)
from singer_sdk.helpers.capabilities import CapabilitiesEnum, PluginCapabilities
from singer_sdk.mapper import RemoveRecordTransform
from singer_sdk.metrics import get_metrics_logger
from singer_sdk.plugin_base import _ConfigInput

from piriod.errors import ConfigError, PiriodError, StoppedError
from piriod.settings import read_config_files
from target_piriod.config import CONFIG_SCHEMA, Settings
from target_piriod.jsonsafe import quote
from target_piriod.loader import Loader, LoadError, Summary
from target_piriod.reader import InputReader
from target_piriod.sinks import CustomersSink
from target_piriod.states import HeldStates
from target_piriod.stopping import Interrupted, Stopper

STREAM = "customers"
# What `meltano config test target-piriod` sends (Meltano 4: SCHEMA, RECORD, STATE), asking
# loaders to write a test record. No fake customer goes to a billing system: the target
# checks the credentials and the API with one read instead, and writes nothing.
MELTANO_TEST_STREAM = "meltano_test_stream"


class UnknownStreamError(click.ClickException):
    """A stream other than ``customers`` reached the target unmapped."""


class TooManyRejectsError(click.ClickException):
    """More records were rejected than ``max_rejects`` allows."""


class RecordBeforeSchemaError(LoadError, RecordsWithoutSchemaException):
    """A RECORD for a stream that had no SCHEMA (the SDK's error, without a traceback)."""


class TargetPiriod(Target):
    """Singer target that upserts ``customers`` records into Piriod."""

    name = "target-piriod"
    package_name = "piriod-singer"
    default_sink_class = CustomersSink
    message_reader_class = InputReader  # line numbers; a bad line stops the run cleanly
    # No FLATTENING (metadata must stay an object), no VALIDATE_RECORDS (records are
    # validated against Piriod's write schema and dead-lettered, never fatal).
    capabilities: ClassVar[list[CapabilitiesEnum]] = [
        PluginCapabilities.ABOUT, PluginCapabilities.STREAM_MAPS,
        PluginCapabilities.STRUCTURED_LOGGING]

    config_jsonschema = CONFIG_SCHEMA

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.stopper = Stopper()  # first: the SDK's __init__ installs the signal handler
        super().__init__(*args, **kwargs)
        if isinstance(self.message_reader, InputReader):
            self.message_reader.on_bad_line = self._stop_at_bad_line
            self.message_reader.stopper = self.stopper
            self.message_reader.on_stop = self._stop_after_signal
        self._failure_reported = False
        self.max_parallelism = 1  # one stream; its writes are concurrent in the Loader
        self.run_id = uuid.uuid4().hex[:12]
        self.states = HeldStates()

    @cached_property
    def settings(self) -> Settings:
        """Return the settings, checked once (see ``target_piriod.config``)."""
        return Settings.parse(self.config)

    def _validate_config(self, *, raise_errors: bool = True) -> list[str]:
        """Check the settings of our own before the SDK's schema, with their names and a fix.

        The SDK would say only "'auth_token' is a required property".
        """
        if raise_errors:
            try:
                self.settings  # noqa: B018  # parsed (and cached) here, or refused
            except ConfigError as error:
                raise ConfigValidationError(str(error), errors=[str(error)]) from error
        return super()._validate_config(raise_errors=raise_errors)

    @classmethod
    def invoke(cls, **kwargs: Any) -> None:
        """Run the target; an expected failure ends it with its message alone (``ended``)."""
        with ended():
            super().invoke(**kwargs)

    @classmethod
    def cb_config(cls, ctx: click.Context, param: click.Option,
                  value: tuple[str, ...]) -> _ConfigInput:
        """Read ``--config``; a missing or broken file is one message, not a traceback."""
        with ended():
            config, parse_env = read_config_files(value)
        return _ConfigInput(config=config, parse_env=parse_env)

    @classmethod
    def append_builtin_config(cls, config_jsonschema: dict) -> None:
        """Add the SDK's built-in settings, except ``load_method`` (always an upsert here)."""
        super().append_builtin_config(config_jsonschema)
        config_jsonschema["properties"].pop("load_method", None)

    @cached_property
    def loader(self) -> Loader:
        """Return the run's Loader (HTTP client, customer index, writer threads)."""
        loader = Loader(self.settings, self.logger, self.run_id)
        if self.stopper.signum is not None:  # a signal came while it was being built
            loader.stop()
        return loader

    def get_sink_class(self, stream_name: str) -> type[CustomersSink]:
        """Return the sink for ``customers``; refuse any other stream loudly."""
        if stream_name == STREAM or self._dropped_by_maps(stream_name):
            return CustomersSink
        raise UnknownStreamError(
            f"target-piriod loads only the '{STREAM}' stream, got '{stream_name}'. Map it "
            f'with stream_maps, e.g. {{"stream_maps": {{"{stream_name}": '
            f'{{"__alias__": "{STREAM}"}}}}}}, or drop it with {{"{stream_name}": null}}.')

    def _dropped_by_maps(self, stream_name: str) -> bool:
        maps = self.mapper.stream_maps.get(stream_name) or []
        return bool(maps) and all(isinstance(m, RemoveRecordTransform) for m in maps)

    # -- Meltano's connection test --------------------------------------------------------

    def _is_meltano_test(self, stream_name: object) -> bool:
        """Tell whether a stream is Meltano's test stream (unless stream_maps map it)."""
        return stream_name == MELTANO_TEST_STREAM and \
            stream_name not in (self.config.get("stream_maps") or {})

    def _connection_test(self, what: str = "Meltano's connection test",
                         outcome: str = "its test record is not written (a test writes "
                                        "nothing to a billing system)") -> None:
        """Check auth_token and api_url with one read; say so in one line; write nothing.

        A wrong token or api_url stops the run with the LoadError naming the setting.
        """
        if getattr(self, "_connection_tested", False):
            return
        count = self.loader.check_access()
        self._connection_tested = True
        readable = "customers readable" if count is None else f"{count} customer(s) readable"
        sys.stderr.write(f"target-piriod: {what}: Piriod at {self.loader.client.base_url} "
                         f"accepted auth_token ({readable}); {outcome}\n")
        sys.stderr.flush()

    @classmethod
    def get_singer_command(cls) -> click.Command:
        """Add ``--test`` (the SDK has it for taps only) to the SDK's command line.

        ``--input`` is read as standard input is (``InputReader.default_input``): UTF-8,
        bytes that are not UTF-8 kept as surrogate escapes for their record's dead letter.
        """
        command = super().get_singer_command()
        for param in command.params:
            if param.name == "file_input":
                param.type = click.File("r", encoding="utf-8", errors="surrogateescape")
        command.params.append(click.Option(
            ["--test"], is_flag=True, expose_value=False, callback=cls.cb_test,
            help="Check auth_token and api_url with one read of the API and exit (1 with "
                 "the setting to fix if they do not work); reads no input, writes nothing."))
        return command

    @classmethod
    def cb_test(cls, ctx: click.Context, param: click.Option, value: bool) -> None:
        """Run the connection test of ``--test`` and exit."""
        if not value:
            return
        config: _ConfigInput = ctx.params.get("config", _ConfigInput())
        with ended():
            target = cls(config=config.config, parse_env_config=config.parse_env,
                         validate_config=True)
            target._connection_test("connection test", "nothing was written")
            target.loader.client.close()
        ctx.exit()

    # -- state and the end of the run ----------------------------------------------------

    def _process_record_message(self, message_dict: dict) -> None:
        """Process a record; then pass on the STATEs whose records are all handled.

        A full sink is drained here, and the Loader returns once the previous batch is
        written: the records before a held STATE may just have been handled.
        """
        if self._is_meltano_test(message_dict.get("stream")):
            return  # Meltano's test record: never written (see _connection_test)
        with self._summary_on_failure():
            if self._refused_message(message_dict):
                return
            super()._process_record_message(message_dict)
            if self.states:
                self._emit_ready_state()

    # -- hostile input -------------------------------------------------------------------

    def _refused_message(self, message: dict) -> bool:
        """Dead-letter a RECORD that has no record to load (``invalid``); True if it did.

        A RECORD without a ``stream`` name, without a ``record``, or whose record is not
        an object (an array, a string, null...) is rejected and the load goes on; a
        RECORD for a stream that had no SCHEMA stops the run, like a line that is not a
        Singer message (``_stop_at_bad_line``).
        """
        stream, record = message.get("stream"), message.get("record")
        if not isinstance(stream, str):
            problem = "without 'stream'" if "stream" not in message else \
                f"whose 'stream' is not a name ({quote(repr(stream))})"
            self.loader.reject_input(record, f"{self._line()}: a RECORD message {problem}")
            return True
        if stream not in self.mapper.stream_maps:
            self._stop_at_bad_line(f"{self._line()}: a RECORD for stream {quote(stream)} before "
                                   "its SCHEMA", RecordBeforeSchemaError)
        if self._dropped_by_maps(stream):
            return False
        if "record" not in message:
            self.loader.reject_input(None, f"{self._line()}: a RECORD message with no "
                                           "'record'")
            return True
        if not isinstance(record, dict):
            self.loader.reject_input(record, f"{self._line()}: the record is "
                                             f"{_json_kind(record)}, not an object")
            return True
        return False

    def _line(self) -> str:
        """Name the input line being processed, for messages (only built when needed)."""
        return f"line {getattr(self.message_reader, 'line_number', '?')}"

    def _stop_at_bad_line(self, message: str,
                          error: type[LoadError] = LoadError) -> NoReturn:
        """Stop at a line that is not a Singer message, as a failed load stops.

        The writes in flight finish (and a STATE they complete is passed on), the
        summary is printed, and the run exits 1 with the message; records after the last
        full batch are not written (a re-run from the last STATE sends them again).
        """
        with self._summary_on_failure():
            self.loader.flush()
            self._emit_ready_state()
            raise error(message)

    def _process_schema_message(self, message_dict: dict) -> None:
        """Register a schema; drain a sink it retires at once, so records stay in order.

        The SDK keeps a retired sink's records until its next full drain, while the new
        sink's full batches are loaded: the Loader would see later records first, and a
        STATE's position (``_records_in``) would no longer say which records it covers.
        """
        if self._is_meltano_test(message_dict.get("stream")):
            self._connection_test()
            return
        super()._process_schema_message(message_dict)
        for sink in self._sinks_to_clear:
            self.drain_one(sink)

    def _process_state_message(self, message_dict: dict) -> None:
        """Hold a STATE until the records before it are handled (target_piriod.states).

        ``InputReader`` has already refused a STATE without ``value``.
        """
        if not self.states.hold(message_dict["value"], self._records_in()):
            self.logger.warning("Ignoring an empty STATE message: passed on, it would make "
                                "the next run start from nothing")
        self._emit_ready_state()

    def _records_in(self) -> int:
        """Return how many records came in: handed to the Loader, or waiting in a sink."""
        sinks = [*self._sinks_active.values(), *self._sinks_to_clear]
        return self.loader.received + sum(sink.current_size for sink in sinks)

    def _emit_ready_state(self) -> None:
        """Pass on the newest STATE whose records are all written or dead-lettered.

        A dry run passes on none: a STATE tells the orchestrator that the records before
        it are loaded, and Meltano would save the source's bookmark, so the real run
        after the rehearsal would skip them. A dry run changes nothing, state included.
        """
        state = self.states.ready(self.loader.handled)
        if state is not None and not self.settings.dry_run:
            self._write_state_message(state)

    def process_endofpipe(self) -> None:
        """Drain, flush, emit the last STATE, print the summary; fail on too many rejects."""
        try:
            self.stopper.check()  # a signal during the last message: that batch is not loaded
            with self._summary_on_failure():
                super().process_endofpipe()
                self.loader.flush()
                self._emit_ready_state()
        except (Interrupted, StoppedError):
            self._stop_after_signal()
        summary = self._report(self.loader.finish())
        limit = self.settings.max_rejects
        if summary.rejected > limit:
            path = self.loader.report.dead_letters.path
            raise TooManyRejectsError(
                f"{summary.rejected} record(s) rejected, more than max_rejects={limit}; "
                f"see {path} (lines with run_id {self.run_id}) for each one's reason: fix "
                "them at the source and run again (the other records were loaded), or "
                "raise max_rejects to accept them")

    # -- signals (target_piriod.stopping) ------------------------------------------------

    def _handle_termination(self, signum: int, frame: FrameType | None) -> None:
        """Replace the SDK's handler, which drained, wrote the latest STATE and exited 0."""
        loader = self.__dict__.get("loader")  # not built inside a signal handler
        self.stopper.handle(signum, loader.stop if loader is not None else _nothing)

    def _stop_after_signal(self) -> NoReturn:
        """Let writes in flight finish (bounded), pass on what STATE is true, exit 128+n."""
        signum = self.stopper.signum or signal.SIGTERM
        loader = self.loader
        loader.stop()
        loader.halt()
        self._emit_ready_state()
        self.logger.warning(
            "Stopped by %s: %d of the %d records received were written or dead-lettered; "
            "no STATE past them was passed on, and a re-run loads the rest",
            signal.Signals(signum).name, loader.handled, loader.received)
        self._report(loader.finish(), interrupted=True)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(128 + signum)  # not waiting for threads given up on

    def _summary_on_failure(self) -> _SummaryOnFailure:
        return _SummaryOnFailure(self)

    def _report(self, summary: Summary, failed: bool = False,
                interrupted: bool = False) -> Summary:
        """Print the one-line summary on stderr and log it as an SDK metric."""
        line = summary.line() + (" (run failed)" if failed else "") + (
            " (interrupted)" if interrupted else "")
        sys.stderr.write(line + "\n")
        sys.stderr.flush()
        point = {"type": "summary", "metric": "target_piriod_summary",
                 "value": summary.as_dict(), "tags": {"stream": STREAM, "run_id": self.run_id,
                                                      "failed": failed,
                                                      "interrupted": interrupted}}
        get_metrics_logger().info("METRIC: %s", json.dumps(point, separators=(",", ":")))
        return summary


class _SummaryOnFailure:
    """Context manager: when a load fails, still print the summary before the error."""

    def __init__(self, target: TargetPiriod) -> None:
        self.target = target

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: object) -> None:
        # Once per run; not when the Loader itself could not start (nothing to report).
        if isinstance(error, LoadError) and "loader" in vars(self.target) and \
                not self.target._failure_reported:
            self.target._failure_reported = True
            self.target._report(self.target.loader.finish(), failed=True)


@contextlib.contextmanager
def ended() -> Iterator[None]:
    """End an expected failure (a setting, the API) with its message alone, exit 1.

    The message names the setting or request and what to do; a traceback would add
    nothing for the person running the target. Load failures are already LoadErrors
    (click prints their message); bugs still show their traceback.
    """
    try:
        yield
    except ConfigValidationError as error:
        raise click.ClickException("; ".join(error.errors) or str(error)) from None
    except PiriodError as error:
        raise click.ClickException(str(error)) from None
    except MappingError as error:  # a stream map the SDK cannot apply
        raise click.ClickException(f"stream_maps: {error} (see "
                                   "https://sdk.meltano.com/en/latest/stream_maps.html)") from None


def _json_kind(value: Any) -> str:
    """Return what a JSON value is, in JSON's words (``an array``, ``null``...)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "a number" if isinstance(value, int | float | Decimal) else \
        f"a {type(value).__name__}"


def _nothing() -> None:
    """Stop nothing: no Loader was built yet."""


if __name__ == "__main__":
    TargetPiriod.cli()
