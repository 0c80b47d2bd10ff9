"""Stopping on SIGTERM or SIGINT: what was written stays written, and STATE says no more.

The SDK's own handler drains the sinks, writes the latest STATE from wherever the signal
lands and exits 0: a signal while a batch was being planned (its records already taken
from the sink, none written yet) passed on a STATE for records never written. Here:

* the first SIGTERM/SIGINT stops the reading of input and asks the engine to stop
  (``Loader.stop()``): the client's waits (a 429's Retry-After, backoff) and retries
  give up at once and nothing new is sent, while requests already in flight finish.
  The signal interrupts the main thread only where it waits for input (a blocking read
  of a tap that is slow or stopped too); anywhere else the engine gives up on its own
  within one request (``StoppedError``), and the run stops before the next message;
* the target then gives the writes in flight one ``request_timeout`` to finish, records
  them, passes on the newest STATE whose records are all handled (never one past a
  record not written), prints the summary marked ``(interrupted)`` and exits
  128 + the signal's number (143 for SIGTERM, 130 for SIGINT) without waiting for the
  threads it gave up on;
* a second signal exits at once, with the same code: a STATE is only ever passed on
  once its records are handled, so whatever was passed on before stays true.

The handler only sets flags and events, and writes its one line with
``piriod.signals.say`` (to file descriptor 2: see there why).
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

from piriod.signals import say

Line = TypeVar("Line")


class Interrupted(BaseException):
    """Raised in the main thread by a signal while it waited for input, or after a message.

    A BaseException, as KeyboardInterrupt is: no ``except Exception`` on its way up may
    take it for an error of the run.
    """

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


class Stopper:
    """One run's signals: which came first, and whether the run is waiting for input."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self.listening = False  # set once input is read: before, there is nothing to save
        self._reading = False

    def handle(self, signum: int, stop_engine: Callable[[], None]) -> None:
        """Handle a signal as the module doc says; ``stop_engine`` only sets events."""
        name = signal.Signals(signum).name
        if self.signum is not None or not self.listening:
            second = "second " if self.signum is not None else ""
            say(f"target-piriod: {second}{name}: exiting now; no STATE was passed on "
                 "past a record that was not written\n")
            os._exit(128 + signum)
        self.signum = signum
        say(f"target-piriod: {name} received: reading no more input; writes in flight "
             "may finish, then the STATE of what was written is passed on\n")
        stop_engine()
        if self._reading:
            raise Interrupted(signum)

    def check(self) -> None:
        """Raise ``Interrupted`` if a signal came (the run stops before the next message)."""
        if self.signum is not None:
            raise Interrupted(self.signum)

    def lines(self, source: Iterable[Line]) -> Iterator[Line]:
        """Yield the input's lines; a signal interrupts a read that waits, or the next one."""
        lines = iter(source)
        while True:
            self.check()
            self._reading = True
            try:
                line = next(lines, None)
            finally:
                self._reading = False
            if line is None:
                return
            yield line

