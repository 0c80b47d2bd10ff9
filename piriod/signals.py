"""Writing from a signal handler, for both connectors' SIGTERM/SIGINT handlers.

A handler runs between two bytecodes of whatever the main thread was doing, possibly in
the middle of a log call that holds ``sys.stderr``'s buffer: writing to ``sys.stderr``
again from the handler can then raise ``RuntimeError: reentrant call``. ``say`` writes
to file descriptor 2 directly, with no buffer to share.
"""

from __future__ import annotations

import contextlib
import os


def say(text: str) -> None:
    """Write ``text`` to stderr's file descriptor, bypassing ``sys.stderr``'s buffer."""
    with contextlib.suppress(OSError):
        os.write(2, text.encode("utf-8", errors="replace"))
