"""A private PostgreSQL server for tests: its own data directory in a temp dir, a free port.

``PostgresServer`` runs the real ``initdb`` / ``pg_ctl`` of an installed PostgreSQL
(15 preferred; Debian puts the binaries in ``/usr/lib/postgresql/<version>/bin``, or set
``PIRIOD_PG_BINDIR``). PostgreSQL refuses to run as root, so as root the server runs as
the ``postgres`` user (or ``nobody`` where there is none) through ``runuser``.

Authentication is ``trust`` on 127.0.0.1 only, and durability is switched off (``fsync``):
a throwaway server for one test session.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

PREFERRED_VERSION = "15"
INSTALL_HINT = ("install it with `apt-get install -y postgresql-15` (Debian), "
                "or point PIRIOD_PG_BINDIR at a directory holding initdb and pg_ctl")


class PostgresNotAvailable(RuntimeError):
    """PostgreSQL is not installed, or would not start."""


def find_bindir() -> Path:
    """Return the directory of ``initdb`` and ``pg_ctl`` (15 if several are installed)."""
    candidates = [os.environ.get("PIRIOD_PG_BINDIR", ""),
                  f"/usr/lib/postgresql/{PREFERRED_VERSION}/bin",
                  *sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)]
    initdb = shutil.which("initdb")
    if initdb:
        candidates.append(str(Path(initdb).resolve().parent))
    for candidate in filter(None, candidates):
        if (Path(candidate) / "initdb").is_file() and (Path(candidate) / "pg_ctl").is_file():
            return Path(candidate)
    raise PostgresNotAvailable(f"PostgreSQL (initdb, pg_ctl) was not found: {INSTALL_HINT}")


def free_port() -> int:
    """Return a TCP port nobody listens on at the moment."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _run_as_user() -> str | None:
    """Return the unprivileged user to run the server as, or None when we are not root."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    raise PostgresNotAvailable("running as root and neither user postgres nor nobody exists")


class PostgresServer:
    """Start with ``start()`` (or ``with``); ``port``, ``user`` and ``connect()`` for clients."""

    user = "postgres"  # the superuser initdb creates; trust authentication, no password
    host = "127.0.0.1"

    def __init__(self) -> None:
        self.bindir = find_bindir()
        self.port = 0
        self.root: Path | None = None
        self._os_user = _run_as_user()

    @property
    def data_dir(self) -> Path:
        """Return the cluster's data directory."""
        assert self.root is not None
        return self.root / "data"

    def _command(self, *args: str) -> list[str]:
        prefix = ["runuser", "-u", self._os_user, "--"] if self._os_user else []
        return [*prefix, *args]

    def _run(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(self._command(*args), capture_output=True, text=True,
                              timeout=120, cwd=self.root)

    def start(self, attempts: int = 3) -> PostgresServer:
        """Create a cluster in a temp dir and start it on a free port (or raise, with logs)."""
        # The server's user must reach its directory: /tmp, not a TMPDIR private to root.
        self.root = Path(tempfile.mkdtemp(prefix="piriod-pg-",
                                          dir="/tmp" if self._os_user else None))
        if self._os_user:
            shutil.chown(self.root, user=self._os_user)
        done = self._run(str(self.bindir / "initdb"), "-D", str(self.data_dir), "-U",
                         self.user, "-A", "trust", "-E", "UTF8", "--no-locale", "--no-sync")
        if done.returncode != 0:
            self.stop()
            raise PostgresNotAvailable(f"initdb failed ({self.bindir}):\n{done.stderr}")
        log = self.root / "server.log"
        for _ in range(attempts):  # a free port can be taken between probe and bind: retry
            self.port = free_port()
            options = (f"-p {self.port} -k {self.root} -c listen_addresses={self.host} "
                       "-c fsync=off -c synchronous_commit=off -c full_page_writes=off")
            done = self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data_dir), "-l",
                             str(log), "-o", options, "-w", "-t", "60", "start")
            if done.returncode == 0:
                return self
        output = done.stdout + done.stderr + (log.read_text() if log.exists() else "")
        self.stop()
        raise PostgresNotAvailable(f"PostgreSQL did not start:\n{output}")

    def stop(self) -> None:
        """Stop the server (fast shutdown) and delete its directory."""
        if self.root is None:
            return
        if (self.data_dir / "postmaster.pid").exists():
            self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data_dir), "-m", "fast",
                      "-w", "stop")
        shutil.rmtree(self.root, ignore_errors=True)
        self.root = None

    def __enter__(self) -> PostgresServer:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.stop()

    # -- clients -------------------------------------------------------------------------

    def dsn(self, database: str = "postgres") -> str:
        """Return a libpq connection string."""
        return f"host={self.host} port={self.port} user={self.user} dbname={database}"

    def connect(self, database: str = "postgres"):  # psycopg is imported late: no annotation
        """Return an autocommit psycopg connection."""
        import psycopg  # only the tests that use PostgreSQL need the driver

        return psycopg.connect(self.dsn(database), autocommit=True)

    def create_database(self, name: str) -> None:
        """Create a database (dropping any of that name first)."""
        with self.connect() as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}"')
            connection.execute(f'CREATE DATABASE "{name}"')

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Wait until the server accepts connections (pg_ctl -w normally did already)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                with self.connect():
                    return
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
