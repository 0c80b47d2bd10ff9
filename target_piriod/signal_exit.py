"""How a signal ends the run: the writes in flight finish, true STATE out, exit 128 + n.

``target_piriod.stopping`` decides when reading stops; this is what the run does then
(the target calls it once the input reader or the end of the pipe saw the stop).
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from collections.abc import Callable
from typing import NoReturn

from target_piriod.loader import Loader, Summary


def exit_after_signal(signum: int, loader: Loader, *, emit_ready_state: Callable[[], None],
                      report: Callable[[Summary], object],
                      logger: logging.Logger) -> NoReturn:
    """Let writes in flight finish (bounded), pass on what STATE is true, exit 128+n."""
    loader.stop()
    loader.halt()
    emit_ready_state()
    logger.warning(
        "Stopped by %s: %d of the %d records received were written or dead-lettered; "
        "no STATE past them was passed on, and a re-run loads the rest",
        signal.Signals(signum).name, loader.handled, loader.received)
    report(loader.finish())
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(128 + signum)  # not waiting for threads given up on
