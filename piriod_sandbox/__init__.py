"""A local stand-in for the Piriod Customers API.

It serves the documented endpoints (``GET/POST /customers/``, ``GET/PATCH /customers/{id}/``)
with Django REST Framework conventions where the documentation is silent, keeps its data
in SQLite, and can inject faults (429, 5xx, dropped connections, slow or malformed replies)
so that the demo, the tests and the benchmarks run with no account and no internet.
Its ``/_sandbox/`` control API (routes listed in piriod_sandbox.server, one method each on
SandboxProcess) also changes data as no client can: deletes, late commits, bulk stamps.
"""

from piriod_sandbox.control import SandboxProcess

__all__ = ["SandboxProcess"]
