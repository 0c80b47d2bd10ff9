"""Transitional: the client moved to ``piriod.client``; names re-exported for the engine."""

from piriod.client import PiriodClient
from piriod.errors import (
    ApiError,
    AuthError,
    OutcomeUnknownError,
    PiriodError,
    RetriesExhaustedError,
)

__all__ = ["ApiError", "AuthError", "OutcomeUnknownError", "PiriodClient", "PiriodError",
           "RetriesExhaustedError"]
