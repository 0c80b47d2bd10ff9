"""target-piriod: upserts customer records into Piriod (reverse ETL), idempotently.

``TargetPiriod`` is the singer-sdk glue: it overrides the SDK's hooks and hands each job
to the module that holds it:

* ``target_piriod.config``: the settings, declared and parsed once;
* ``target_piriod.routing``: ``customers`` to its sink, Meltano's test stream to
  ``target_piriod.connection_test`` (also ``--test``), any other stream refused;
* ``target_piriod.bad_input``: RECORDs with nothing to load, dead-lettered;
* ``target_piriod.states``: STATE held until the records before it are handled;
* ``target_piriod.stopping`` and ``target_piriod.signal_exit``: a signal's stop;
* ``target_piriod.summary``: the summary line and the max_rejects verdict;
* ``target_piriod.command_line``: expected failures end with their message alone.

The records themselves go to the ``Loader`` (``target_piriod.loader``) through the sink.
"""

from __future__ import annotations

import signal
import uuid
from functools import cached_property
from types import FrameType
from typing import Any, ClassVar, NoReturn

import click
from singer_sdk import Target
from singer_sdk.exceptions import ConfigValidationError
from singer_sdk.helpers.capabilities import CapabilitiesEnum, PluginCapabilities
from singer_sdk.plugin_base import _ConfigInput

from piriod.errors import ConfigError, StoppedError
from piriod.settings import read_config_files
from target_piriod.bad_input import RecordBeforeSchemaError, bad_record
from target_piriod.command_line import ended, read_input_as_utf8
from target_piriod.config import CONFIG_SCHEMA, Settings
from target_piriod.connection_test import add_test_option, check_connection
from target_piriod.loader import Loader, LoadError
from target_piriod.reader import InputReader
from target_piriod.routing import check_stream, dropped_by_maps, is_meltano_test
from target_piriod.signal_exit import exit_after_signal
from target_piriod.sinks import CustomersSink
from target_piriod.states import HeldStates
from target_piriod.stopping import Interrupted, Stopper
from target_piriod.summary import check_rejects, print_summary, summary_on_failure


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
        self._connection_tested = False
        self.max_parallelism = 1  # one stream; its writes are concurrent in the Loader
        self.run_id = uuid.uuid4().hex[:12]
        self.states = HeldStates()

    # -- settings and the command line (target_piriod.config, .command_line) -------------

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
            except (TypeError, ValueError):
                pass  # a value of the wrong type: the SDK's schema check below names it
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

    @classmethod
    def get_singer_command(cls) -> click.Command:
        """Add ``--test`` (the SDK has it for taps only); read ``--input`` as UTF-8."""
        command = super().get_singer_command()
        read_input_as_utf8(command)
        add_test_option(command, cls.cb_test)
        return command

    @classmethod
    def cb_test(cls, ctx: click.Context, param: click.Parameter, value: bool) -> None:
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

    @cached_property
    def loader(self) -> Loader:
        """Return the run's Loader (HTTP client, customer index, writer threads)."""
        loader = Loader(self.settings, self.logger, self.run_id)
        if self.stopper.signum is not None:  # a signal came while it was being built
            loader.stop()
        return loader

    # -- streams (target_piriod.routing, .connection_test) -------------------------------

    def get_sink_class(self, stream_name: str) -> type[CustomersSink]:
        """Return the sink for ``customers``; refuse any other stream loudly."""
        check_stream(self.mapper, stream_name)
        return CustomersSink

    def _connection_test(self, what: str = "Meltano's connection test",
                         outcome: str = "its test record is not written (a test writes "
                                        "nothing to a billing system)") -> None:
        """Check auth_token and api_url with one read, once; write nothing."""
        if not self._connection_tested:
            check_connection(self.loader, what, outcome)
            self._connection_tested = True

    def _process_schema_message(self, message_dict: dict) -> None:
        """Register a schema; drain a sink it retires at once, so records stay in order.

        The SDK keeps a retired sink's records until its next full drain, while the new
        sink's full batches are loaded: the Loader would see later records first, and a
        STATE's position (``_records_in``) would no longer say which records it covers.
        """
        if is_meltano_test(message_dict.get("stream"), self.config):
            self._connection_test()
            return
        super()._process_schema_message(message_dict)
        for sink in self._sinks_to_clear:
            self.drain_one(sink)

    def _process_record_message(self, message_dict: dict) -> None:
        """Process a record; then pass on the STATEs whose records are all handled.

        A full sink is drained here, and the Loader returns once the previous batch is
        written: the records before a held STATE may just have been handled.
        """
        if is_meltano_test(message_dict.get("stream"), self.config):
            return  # Meltano's test record: never written (see _connection_test)
        with summary_on_failure(self._report_failure):
            if self._refused_message(message_dict):
                return
            super()._process_record_message(message_dict)
            if self.states:
                self._emit_ready_state()

    # -- bad input (target_piriod.bad_input, target_piriod.reader) -----------------------

    def _refused_message(self, message: dict) -> bool:
        """Dead-letter a RECORD that has no record to load; True if it did.

        A RECORD for a stream that had no SCHEMA stops the run instead.
        """
        bad = bad_record(message, self._line, known=self.mapper.stream_maps,
                         dropped=lambda stream: dropped_by_maps(self.mapper, stream))
        if bad is None:
            return False
        if bad.fatal:
            self._stop_at_bad_line(bad.reason, RecordBeforeSchemaError)
        self.loader.reject_input(bad.record, bad.reason)
        return True

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
        with summary_on_failure(self._report_failure):
            self.loader.flush()
            self._emit_ready_state()
            raise error(message)

    # -- STATE (target_piriod.states) ----------------------------------------------------

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

    # -- the end of the run (target_piriod.summary) --------------------------------------

    def process_endofpipe(self) -> None:
        """Drain, flush, emit the last STATE, print the summary; fail on too many rejects."""
        try:
            self.stopper.check()  # a signal during the last message: that batch is not loaded
            with summary_on_failure(self._report_failure):
                super().process_endofpipe()
                self.loader.flush()
                self._emit_ready_state()
        except (Interrupted, StoppedError):
            self._stop_after_signal()
        summary = print_summary(self.loader.finish(), self.run_id)
        check_rejects(summary, self.settings.max_rejects,
                      self.loader.report.dead_letters.path, self.run_id)

    def _report_failure(self) -> None:
        """Print the summary of a failed load: once, and only if the Loader started."""
        if "loader" in vars(self) and not self._failure_reported:
            self._failure_reported = True
            print_summary(self.loader.finish(), self.run_id, failed=True)

    # -- signals (target_piriod.stopping, target_piriod.signal_exit) ---------------------

    def _handle_termination(self, signum: int, frame: FrameType | None) -> None:
        """Replace the SDK's handler, which drained, wrote the latest STATE and exited 0."""
        loader = self.__dict__.get("loader")  # not built inside a signal handler
        self.stopper.handle(signum, loader.stop if loader is not None else _nothing)

    def _stop_after_signal(self) -> NoReturn:
        """Stop as ``target_piriod.signal_exit`` says, with the summary ``(interrupted)``."""
        exit_after_signal(
            self.stopper.signum or signal.SIGTERM, self.loader,
            emit_ready_state=self._emit_ready_state, logger=self.logger,
            report=lambda summary: print_summary(summary, self.run_id, interrupted=True))


def _nothing() -> None:
    """Stop nothing: no Loader was built yet."""


if __name__ == "__main__":
    TargetPiriod.cli()
