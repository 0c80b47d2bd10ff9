"""The sandbox's customer store: SQLite tables, validation of writes, rendering of reads.

Customers are kept in their *write* shape (country and state as codes) and rendered into
the *read* shape (country and state as objects, DRF-style timestamps) when served. The
rendered JSON of each customer is cached in the row, so a list page is a string join: the
sandbox must not be the bottleneck of a benchmark that measures the tap.
"""

from __future__ import annotations

import json
import random
import re
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone

from piriod_sandbox.data import (
    COUNTRIES,
    CURRENCIES,
    STATES,
    new_id,
    plain_customer,
    seed_customer,
)

WRITABLE = ("address", "country", "currency", "email", "metadata", "name", "phone", "state",
            "tax_id", "tax_settings", "website")
READ_ORDER = ("id", "name", "email", "address", "country", "state", "currency", "phone",
              "tax_id", "tax_settings", "website", "metadata", "aggregations", "contacts",
              "sources", "created", "updated")
ORDERING_FIELDS = {"id": "id", "created": "created_us", "updated": "updated_us",
                   "name": "name", "email": "email", "tax_id": "tax_id"}
_MAX_LENGTHS = {"name": 255, "email": 254, "address": 500, "phone": 32, "tax_id": 64,
                "website": 200}
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_URL = re.compile(r"^https?://[^\s/$.?#][^\s]*\.[^\s]+$", re.IGNORECASE)
# Lists kept for clients paging through them (see CustomerStore._page_rowids).
MAX_CACHED_LISTINGS = 8
# Ids per SELECT ... WHERE id IN (...): well under SQLite's bound-parameter limit.
_ID_CHUNK = 500
# Offsets the sandbox may render timestamps in (``mixed_offsets``): all the same instant.
_OFFSETS = [timezone(timedelta(hours=h, minutes=m)) for h, m in
            ((0, 0), (-3, 0), (-5, 0), (5, 45), (9, 30), (-9, -30), (14, 0))]


_INSERT_SQL = (
    "INSERT INTO customers (id, seq, shuffle, created_us, updated_us, name, email, tax_id, "
    "country, data, doc) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_UPDATE_SQL = (
    "UPDATE customers SET updated_us = ?, name = ?, email = ?, tax_id = ?, country = ?, "
    "data = ?, doc = ? WHERE id = ?"
)


class ValidationError(Exception):
    """A write the API refuses with 400 and a field-to-messages body."""

    def __init__(self, errors: dict[str, list[str]]) -> None:
        super().__init__(errors)
        self.errors = errors


class NotFound(Exception):
    """An id that no customer has."""


def now_us() -> int:
    """Return the current time in microseconds since the epoch."""
    return time.time_ns() // 1000


def to_us(moment: datetime) -> int:
    """Return an aware (or naive-as-UTC) datetime as microseconds since the epoch."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    delta = moment - datetime(1970, 1, 1, tzinfo=timezone.utc)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def render_time(micros: int, tz: timezone = timezone.utc) -> str:
    """Render a timestamp as DRF does: isoformat, microseconds only when non-zero, Z for UTC."""
    moment = datetime(1970, 1, 1, tzinfo=timezone.utc) + timedelta(microseconds=micros)
    return moment.astimezone(tz).isoformat().replace("+00:00", "Z")


def parse_time(text: str) -> int:
    """Parse an ISO 8601 date or date-time filter value into microseconds (naive means UTC)."""
    text = text.strip().replace(" ", "+") if "T" in text else text.strip()
    moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    return to_us(moment)


def validate_write(body: object, *, partial: bool, current: dict | None = None) -> dict:
    """Return the writable fields of ``body`` or raise ValidationError as DRF would.

    Read-only and unknown fields are ignored (DRF's behaviour); ``current`` is the stored
    customer on a PATCH, so that a state is checked against the country it will end with.
    """
    if not isinstance(body, dict):
        raise ValidationError({"non_field_errors": ["Invalid data. Expected a dictionary."]})
    clean = {key: body[key] for key in WRITABLE if key in body}
    errors: dict[str, list[str]] = {}
    if not partial and not clean.get("name"):
        errors["name"] = ["This field is required."]
    for key, value in clean.items():
        message = _field_error(key, value)
        if message:
            errors[key] = [message]
    country = clean.get("country", (current or {}).get("country"))
    state = clean.get("state")
    if state and "state" not in errors and country and STATES[state][0] != country:
        errors["state"] = [f'State "{state}" does not belong to country "{country}".']
    if errors:
        raise ValidationError(errors)
    return clean


def _field_error(key: str, value: object) -> str | None:
    if value is None:
        return "This field may not be null." if key == "name" else None
    if key == "metadata":
        return None if isinstance(value, dict) else f'Expected a dictionary of items but got type "{type(value).__name__}".'  # noqa: E501
    if key in ("country", "state") and isinstance(value, dict):
        return f"Incorrect type. Expected pk value, received {type(value).__name__}."
    if not isinstance(value, str):
        return "Not a valid string."
    if key == "name" and not value.strip():
        return "This field may not be blank."
    if len(value) > _MAX_LENGTHS.get(key, 10_000):
        return f"Ensure this field has no more than {_MAX_LENGTHS[key]} characters."
    if key == "email" and value and not _EMAIL.match(value):
        return "Enter a valid email address."
    if key == "website" and value and not _URL.match(value):
        return "Enter a valid URL."
    if key == "country" and value not in COUNTRIES:
        return f'Invalid pk "{value}" - object does not exist.'
    if key == "state" and value not in STATES:
        return f'Invalid pk "{value}" - object does not exist.'
    if key == "currency" and value not in CURRENCIES:
        return f'"{value}" is not a valid choice.'
    return None


class CustomerStore:
    """Thread-safe customer storage in SQLite (in memory unless a path is given)."""

    def __init__(self, path: str = ":memory:") -> None:
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._lock = threading.Lock()
        self._seq = 0
        self._db.executescript(
            """
            PRAGMA journal_mode=WAL;
            CREATE TABLE IF NOT EXISTS customers (
                id TEXT PRIMARY KEY, seq INTEGER NOT NULL, shuffle INTEGER NOT NULL,
                created_us INTEGER NOT NULL, updated_us INTEGER NOT NULL,
                name TEXT, email TEXT, tax_id TEXT, country TEXT,
                data TEXT NOT NULL, doc TEXT NOT NULL);
            CREATE INDEX IF NOT EXISTS by_updated ON customers (updated_us, seq);
            CREATE INDEX IF NOT EXISTS by_created ON customers (created_us, seq);
            -- Covering indexes for the orderings clients page through (``created,id``
            -- for the tap, ``-created`` by default), with ``updated_us`` for its filter:
            -- skipping OFFSET rows then never reads a row's JSON (see page()).
            CREATE INDEX IF NOT EXISTS by_created_id ON customers
                (created_us, id, seq, updated_us);
            CREATE INDEX IF NOT EXISTS by_created_desc ON customers
                (created_us DESC, seq, updated_us);
            CREATE INDEX IF NOT EXISTS by_seq ON customers (seq);
            CREATE INDEX IF NOT EXISTS by_shuffle ON customers (shuffle);
            CREATE INDEX IF NOT EXISTS by_tax_id ON customers (tax_id);
            CREATE INDEX IF NOT EXISTS by_email ON customers (email);
            """
        )
        self._seq = self._db.execute("SELECT COALESCE(MAX(seq), 0) FROM customers").fetchone()[0]
        # Lists being paged through (see _page_rowids), valid until the next write.
        self._writes = 0
        self._listings: dict[tuple, list[int]] = {}
        self._listings_version: tuple[int, int] | None = None
        self._rng = random.Random()
        self.clock_offset_us = 0  # a server whose clock is off (fault plan's clock_offset_s)

    def now_us(self) -> int:
        """Return the server's idea of now, in microseconds."""
        return now_us() + self.clock_offset_us

    # -- reads ---------------------------------------------------------------------------

    def count(self) -> int:
        """Return how many customers exist."""
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM customers").fetchone()[0]

    def get(self, customer_id: str, mixed_offsets: bool = False) -> dict:
        """Return one customer in read shape, or raise NotFound."""
        with self._lock:
            row = self._db.execute(
                "SELECT data, created_us, updated_us FROM customers WHERE id = ?", (customer_id,)
            ).fetchone()
        if row is None:
            raise NotFound(customer_id)
        return self._render(json.loads(row[0]), row[1], row[2], mixed_offsets)

    def page(self, where: list[tuple[str, object]], order_by: str, offset: int, limit: int,
             mixed_offsets: bool = False) -> tuple[int, list[str]]:
        """Return (total count, JSON documents of one page) for a filtered, ordered list."""
        clause = " AND ".join(sql for sql, _ in where)
        params = [value for _, value in where]
        with self._lock:
            total, rowids = self._page_rowids(f" WHERE {clause}" if clause else "", params,
                                              order_by, offset, limit)
            found = {row[0]: row[1:] for row in self._db.execute(
                "SELECT rowid, doc, data, created_us, updated_us FROM customers "  # noqa: S608
                f"WHERE rowid IN ({','.join('?' * len(rowids))})",
                rowids,
            )}
            rows = [found[rowid] for rowid in rowids]
        if not mixed_offsets:
            return total, [row[0] for row in rows]
        return total, [json.dumps(self._render(json.loads(data), c, u, True))
                       for _, data, c, u in rows]

    def _page_rowids(self, where: str, params: list[object], order_by: str, offset: int,
                     limit: int) -> tuple[int, list[int]]:
        """Return (total count, rowids of one page); same answer as COUNT and LIMIT/OFFSET.

        A client paging through a list (any page after the first) gets the whole list's
        rowids read once, in order, and each later page sliced from it until the next
        write: a page then costs the same at any depth (OFFSET makes page n cost O(n), a
        100,000-customer extract O(n^2)). The first page, or a one-off lookup, is queried
        directly.
        """
        version = (self._writes, self._db.execute("PRAGMA data_version").fetchone()[0])
        if version != self._listings_version:
            self._listings, self._listings_version = {}, version
        key = (where, tuple(params), order_by)
        listing = self._listings.get(key)
        if listing is None and offset > 0:
            if len(self._listings) >= MAX_CACHED_LISTINGS:
                self._listings.clear()
            listing = self._listings[key] = [row[0] for row in self._db.execute(
                f"SELECT rowid FROM customers{where} ORDER BY {order_by}", params)]  # noqa: S608
        if listing is not None:
            return len(listing), listing[offset:offset + limit]
        total = self._db.execute(
            f"SELECT COUNT(*) FROM customers{where}", params  # noqa: S608
        ).fetchone()[0]
        rowids = [row[0] for row in self._db.execute(
            f"SELECT rowid FROM customers{where} ORDER BY {order_by} LIMIT ? OFFSET ?",  # noqa: S608
            [*params, limit, offset],
        )]
        return total, rowids

    def all_customers(self) -> list[dict]:
        """Return every customer in read shape (UTC), in creation order: for test assertions."""
        with self._lock:
            rows = self._db.execute("SELECT doc FROM customers ORDER BY seq").fetchall()
        return [json.loads(row[0]) for row in rows]

    # -- writes --------------------------------------------------------------------------

    def create(self, body: object) -> dict:
        """Validate and insert a customer; return it in read shape."""
        data = self._new_data(validate_write(body, partial=False), new_id(self._rng))
        stamp = self.now_us()
        with self._lock:
            self._insert(data, stamp, stamp)
        return self._render(data, stamp, stamp)

    def update(self, customer_id: str, body: object) -> dict:
        """Validate and apply a partial update; ``updated`` moves even if nothing changed."""
        with self._lock:
            row = self._db.execute(
                "SELECT data, created_us FROM customers WHERE id = ?", (customer_id,)
            ).fetchone()
            if row is None:
                raise NotFound(customer_id)
            data = json.loads(row[0])
            data.update(validate_write(body, partial=True, current=data))
            stamp = self.now_us()
            self._save(data, row[1], stamp)
        return self._render(data, row[1], stamp)

    def touch(self, ids: Iterable[str], updated_us: int | None, changes: dict) -> list[str]:
        """Apply ``changes`` unvalidated and set ``updated`` (admin back door for tests)."""
        stamp = updated_us if updated_us is not None else self.now_us()
        touched = []
        with self._lock:
            for customer_id in ids:
                row = self._db.execute(
                    "SELECT data, created_us FROM customers WHERE id = ?", (customer_id,)
                ).fetchone()
                if row is None:
                    raise NotFound(customer_id)
                data = {**json.loads(row[0]), **changes}
                self._save(data, row[1], stamp)
                touched.append(customer_id)
        return touched

    # -- back doors for tests: what happens to the data outside the documented API --------

    def delete(self, ids: Iterable[str]) -> list[str]:
        """Delete customers; Piriod documents no DELETE, so only the control API does this.

        All or nothing: an unknown id raises NotFound and deletes none, so a test with a
        mistyped id fails loudly instead of running against half-deleted data.
        """
        wanted = list(dict.fromkeys(ids))
        with self._lock:
            self._rows_by_id(wanted)  # raises NotFound before anything is deleted
            with self._transaction():
                self._db.executemany("DELETE FROM customers WHERE id = ?",
                                     [(customer_id,) for customer_id in wanted])
        return wanted

    def insert(self, body: object, created_us: int | None = None,
               updated_us: int | None = None, customer_id: str | None = None) -> dict:
        """Insert a validated customer with chosen stamps: a late commit.

        Django stamps ``auto_now`` fields when a row is saved, not when its transaction
        commits, so a long transaction makes rows visible whose ``updated`` is already in
        the past: the row a ``updated__gte`` bookmark can skip. Either stamp defaults to
        the other, both to now.
        """
        data = self._new_data(validate_write(body, partial=False),
                              customer_id or new_id(self._rng))
        now = self.now_us()
        created = next(s for s in (created_us, updated_us, now) if s is not None)
        updated = updated_us if updated_us is not None else created
        with self._lock:
            if self._db.execute("SELECT 1 FROM customers WHERE id = ?", (data["id"],)).fetchone():
                raise ValidationError({"id": ["A customer with this id already exists."]})
            self._insert(data, created, updated)
        return self._render(data, created, updated)

    def stamp(self, ids: list[str] | None = None, first: int | None = None,
              order_by: str = "seq ASC", updated_us: int | None = None,
              changes: dict | None = None) -> list[str]:
        """Give many customers one ``updated`` instant, as ``UPDATE ... SET updated=now()``.

        Picks ``ids``, else the ``first`` N in ``order_by`` (SQL built by the server from
        a whitelist), else everyone; ``changes`` are applied unvalidated, as with touch().
        One transaction: no reader sees half the rows stamped. Every row is rendered before
        anything is written, so a change that cannot be rendered writes nothing.
        """
        stamp = updated_us if updated_us is not None else self.now_us()
        with self._lock:
            if ids is not None:
                rows = self._rows_by_id(list(dict.fromkeys(ids)))
            else:
                rows = self._db.execute(
                    f"SELECT id, data, created_us FROM customers ORDER BY {order_by} "  # noqa: S608
                    "LIMIT ?", (first if first is not None else -1,)).fetchall()
            values = [self._update_values({**json.loads(data), **(changes or {})}, created, stamp)
                      for _, data, created in rows]
            with self._transaction():
                self._db.executemany(_UPDATE_SQL, values)
        return [row[0] for row in rows]

    def tie_storm(self, count: int, updated_us: int | None = None,
                  created_us: int | None = None, rng_seed: int | None = None) -> list[str]:
        """Append ``count`` valid customers that all share one ``updated`` instant.

        One transaction of plain rows (100,000 take seconds, not 100,000 requests).
        ``created`` is shared too if given, else one millisecond apart, in insertion
        order, ending before ``updated``. The ids are random (repeatable with
        ``rng_seed`` for the same store history) and never collide with seeded ones.
        """
        stamp = updated_us if updated_us is not None else self.now_us()
        with self._lock:
            rng = random.Random(f"{rng_seed}:{self._seq}") if rng_seed is not None \
                else random.Random()
            rows = []
            for offset in range(count):
                self._seq += 1
                created = created_us if created_us is not None \
                    else stamp - (count - offset) * 1000
                rows.append(self._insert_values(plain_customer(rng, self._seq), self._seq,
                                                created, stamp))
            with self._transaction():
                self._db.executemany(_INSERT_SQL, rows)
        return [row[0] for row in rows]

    def churn(self, deletes: int, inserts: int, within: int, rng: random.Random,
              insert_from: int = 0) -> tuple[list[str], list[str]]:
        """Delete and insert customers among the first ``within`` in creation order.

        What another client does while a listing is read: deletes, and inserts that a
        late-committing transaction stamped with a ``created`` between two existing rows
        (``updated`` is now). Either shifts every later row of the listing by one slot.
        ``within`` 0 means the whole list; ``insert_from`` > 0 puts the inserts after that
        row (0-based) of the whole list instead. Returns (deleted ids, inserted ids).
        """
        with self._lock:
            rows = [(row[0], row[1]) for row in self._db.execute(
                "SELECT id, created_us FROM customers ORDER BY created_us, id")]
            region = rows[:within] if within > 0 else rows
            doomed = rng.sample([cid for cid, _ in region], min(deletes, len(region)))
            now, added = self.now_us(), []
            with self._transaction():
                self._db.executemany("DELETE FROM customers WHERE id = ?",
                                     [(customer_id,) for customer_id in doomed])
                among = rows if insert_from else region
                for _ in range(inserts if len(among) > insert_from + 1 else 0):
                    slot = rng.randrange(insert_from, len(among) - 1)
                    created = (among[slot][1] + among[slot + 1][1]) // 2
                    self._seq += 1
                    values = self._insert_values(plain_customer(rng, self._seq), self._seq,
                                                 created, now)
                    self._db.execute(_INSERT_SQL, values)
                    added.append(values[0])
        return doomed, added

    def random_ids(self, count: int, seed: int | None = None) -> list[str]:
        """Return ``count`` distinct random customer ids."""
        with self._lock:
            ids = [row[0] for row in self._db.execute("SELECT id FROM customers ORDER BY seq")]
        return random.Random(seed).sample(ids, min(count, len(ids)))

    def reset(self, seed_count: int = 0, rng_seed: int = 7) -> None:
        """Delete every customer, then seed ``seed_count`` realistic ones."""
        rng = random.Random(rng_seed)
        now = datetime.now(timezone.utc)
        with self._lock:
            self._db.execute("DELETE FROM customers")
            self._seq = 0
            self._writes += 1
            self._db.execute("BEGIN")
            for index in range(1, seed_count + 1):
                data = seed_customer(rng, index, now)
                created, updated = data.pop("created"), data.pop("updated")
                self._insert(data, to_us(created), to_us(updated))
            self._db.execute("COMMIT")

    @staticmethod
    def _new_data(clean: dict, customer_id: str) -> dict:
        """Return a new customer's stored data from its validated writable fields."""
        data = {key: clean.get(key) for key in WRITABLE}
        data["metadata"] = data["metadata"] or {}
        data.update(id=customer_id, contacts=[], sources=[],
                    aggregations={"balance": 0, "sales": 0, "sales_current_period": 0})
        return data

    def _rows_by_id(self, ids: list[str]) -> list[tuple[str, str, int]]:
        """Return (id, data, created_us) per id, in the order given; NotFound names misses."""
        found: dict[str, tuple[str, str, int]] = {}
        for start in range(0, len(ids), _ID_CHUNK):
            chunk = ids[start:start + _ID_CHUNK]
            found.update((row[0], row) for row in self._db.execute(
                "SELECT id, data, created_us FROM customers "  # noqa: S608
                f"WHERE id IN ({','.join('?' * len(chunk))})", chunk))
        missing = [customer_id for customer_id in ids if customer_id not in found]
        if missing:
            raise NotFound(", ".join(missing))
        return [found[customer_id] for customer_id in ids]

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        """Run a bulk change as one transaction (hold ``_lock``); invalidate cached lists."""
        self._writes += 1
        self._db.execute("BEGIN")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def _insert(self, data: dict, created_us: int, updated_us: int) -> None:
        self._seq += 1
        self._writes += 1
        self._db.execute(_INSERT_SQL,
                         self._insert_values(data, self._seq, created_us, updated_us))

    def _insert_values(self, data: dict, seq: int, created_us: int, updated_us: int) -> tuple:
        return (data["id"], seq, self._rng.getrandbits(62), created_us, updated_us,
                data.get("name"), data.get("email"), data.get("tax_id"), data.get("country"),
                json.dumps(data), json.dumps(self._render(data, created_us, updated_us)))

    def _save(self, data: dict, created_us: int, updated_us: int) -> None:
        self._writes += 1
        self._db.execute(_UPDATE_SQL, self._update_values(data, created_us, updated_us))

    def _update_values(self, data: dict, created_us: int, updated_us: int) -> tuple:
        return (updated_us, data.get("name"), data.get("email"), data.get("tax_id"),
                data.get("country"), json.dumps(data),
                json.dumps(self._render(data, created_us, updated_us)), data["id"])

    @staticmethod
    def _render(data: dict, created_us: int, updated_us: int, mixed_offsets: bool = False
                ) -> dict:
        """Return the read shape: codes become objects, timestamps become DRF strings."""
        tz = timezone.utc
        if mixed_offsets:  # the same instant, shown in an offset picked by the id
            tz = _OFFSETS[sum(map(ord, data["id"])) % len(_OFFSETS)]
        country, state = data.get("country"), data.get("state")
        shaped = {
            **data,
            "country": {"id": country, "name": COUNTRIES[country]} if country else None,
            "state": {"id": state, "name": STATES[state][1], "country": STATES[state][0]}
            if state in STATES else None,
            "created": render_time(created_us, tz),
            "updated": render_time(updated_us, tz),
        }
        read = {key: shaped.get(key) for key in READ_ORDER}
        # An attribute the documentation does not list (Piriod added one): only the
        # control API's ``touch`` stores one. It is served after the documented ones.
        read.update((key, value) for key, value in data.items() if key not in read)
        return read
