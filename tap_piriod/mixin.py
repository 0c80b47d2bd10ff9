"""The base of the stream mixins: ``Stream`` to the type checker, ``object`` at run time.

The mixins (``fast_records``, ``batches``, ``attributes``) replace ``Stream`` methods and
reach the SDK's through ``self`` and ``super()``. Seen as ``Stream`` subclasses, their
overrides and calls are checked against the SDK's signatures (an SDK upgrade that changes
one fails ``make lint``); at run time they stay plain mixins, listed before ``Stream``.
"""

from __future__ import annotations

import typing as t

if t.TYPE_CHECKING:
    from singer_sdk import Stream as StreamMixin
else:
    StreamMixin = object

__all__ = ["StreamMixin"]
