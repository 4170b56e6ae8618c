"""A `limits` storage over one SQLite file: the embedded counter store's engine.

WAL mode, one `BEGIN IMMEDIATE` write transaction per call: SQLite's file lock makes each call
atomic across the processes of one node, and a process that dies holds no lock. Fixed counters
keep one row per key. A moving window keeps one row per entry (pruned per key on each hit), as
the library's own storages keep one list item per entry, and beside them its size
(`window_sizes`), kept in step by every insert and delete, so a check reads one row: counting
the rows would cost a walk over every entry of the window on every call, under the node-wide
lock (100,000 rows for a daily limit of that size).

A write lock held by another process is waited for here, not in SQLite: SQLite's own busy
handler sleeps inside the C call (1 ms, then 2, 5, 10 ms...), which under gevent stops every
request of the worker for that long. `BEGIN IMMEDIATE` fails at once instead (`busy_timeout`
0 on the connection) and is retried after `time.sleep`, which yields to the worker's other
requests (gevent patches it) and starts at 50 µs: a transaction here holds the lock for tens
of microseconds. After `busy_timeout` seconds the store counts as unavailable.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from limits.storage import MovingWindowSupport, Storage

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS counters (key TEXT PRIMARY KEY, value INTEGER NOT NULL, expires_at REAL NOT NULL)",
    "CREATE TABLE IF NOT EXISTS entries (key TEXT NOT NULL, at REAL NOT NULL, expires_at REAL NOT NULL)",
    "CREATE INDEX IF NOT EXISTS entries_by_key ON entries (key, at)",
    "CREATE TABLE IF NOT EXISTS leases (key TEXT NOT NULL, lease TEXT NOT NULL, expires_at REAL NOT NULL,"
    " PRIMARY KEY (key, lease))",
    "CREATE TABLE IF NOT EXISTS window_sizes (key TEXT PRIMARY KEY, size INTEGER NOT NULL) WITHOUT ROWID",
)
_VERSION = 1  # PRAGMA user_version: 1 = window_sizes kept (a file of before is brought up once)
_RESIZE = (
    "INSERT INTO window_sizes VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET size = window_sizes.size + excluded.size"
)
_SWEEP_EVERY = 1000  # transactions between two deletions of every expired row
_FIRST_PAUSE, _LONGEST_PAUSE = 0.00005, 0.002  # seconds between two tries of a held write lock


class SQLiteStorage(Storage, MovingWindowSupport):
    """A `limits` storage over one SQLite file (WAL, one write transaction per call).

    One connection per process (reopened after a fork), shared by its threads under a lock.
    """

    STORAGE_SCHEME = ["jetpero+sqlite"]

    def __init__(self, uri: str, wrap_exceptions: bool = True, busy_timeout: float = 5.0, **options: Any):
        super().__init__(uri, wrap_exceptions=wrap_exceptions, **options)
        self.path = uri.removeprefix("jetpero+sqlite://")
        self.busy_timeout = busy_timeout
        self._lock = threading.Lock()
        self._pid = -1
        self._conn: sqlite3.Connection | None = None
        self._transactions = 0

    @property
    def base_exceptions(self) -> type[Exception] | tuple[type[Exception], ...]:
        return (sqlite3.Error, OSError)

    def _connect(self) -> sqlite3.Connection:
        if self._conn is None or self._pid != os.getpid():
            os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
            conn = sqlite3.connect(self.path, timeout=self.busy_timeout, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=OFF")  # counters, not records: a power cut may lose the last writes
            for statement in _SCHEMA:
                conn.execute(statement)
            if conn.execute("PRAGMA user_version").fetchone()[0] < _VERSION:
                conn.execute("BEGIN IMMEDIATE")
                if conn.execute("PRAGMA user_version").fetchone()[0] < _VERSION:  # another process may have
                    conn.execute("DELETE FROM window_sizes")
                    conn.execute("INSERT INTO window_sizes SELECT key, COUNT(*) FROM entries GROUP BY key")
                    conn.execute(f"PRAGMA user_version = {_VERSION}")
                conn.execute("COMMIT")
            conn.execute("PRAGMA busy_timeout = 0")  # a held lock is waited for in `_begin`, cooperatively
            self._conn, self._pid = conn, os.getpid()
        return self._conn

    @contextmanager
    def transaction(self) -> Iterator[tuple[sqlite3.Connection, float]]:
        """BEGIN IMMEDIATE (the node-wide write lock) ... COMMIT; yields (connection, now)."""
        with self._lock:
            conn = self._connect()
            try:
                self._begin(conn)
                now = time.time()
                yield conn, now
                self._transactions += 1
                if self._transactions % _SWEEP_EVERY == 0:
                    self._sweep(conn, now)
                conn.execute("COMMIT")
            except sqlite3.Error:
                self._conn = None  # reopened by the next call: a store that comes back is used again
                conn.close()
                raise
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

    def _begin(self, conn: sqlite3.Connection) -> None:
        """BEGIN IMMEDIATE, retried (yielding) while another process holds the write lock."""
        pause, deadline = _FIRST_PAUSE, None
        while True:
            try:
                conn.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as exc:
                if exc.sqlite_errorcode != sqlite3.SQLITE_BUSY:
                    raise
                now = time.monotonic()
                deadline = deadline or now + self.busy_timeout
                if now >= deadline:
                    raise
            time.sleep(pause)
            pause = min(pause * 2, _LONGEST_PAUSE)

    @staticmethod
    def _sweep(conn: sqlite3.Connection, now: float) -> None:
        """Delete every expired row (windows' sizes kept in step)."""
        expired = conn.execute("SELECT key, -COUNT(*) FROM entries WHERE expires_at <= ? GROUP BY key", (now,))
        conn.executemany(_RESIZE, expired.fetchall())
        conn.execute("DELETE FROM window_sizes WHERE size <= 0")
        for table in ("counters", "entries", "leases"):
            conn.execute(f"DELETE FROM {table} WHERE expires_at <= ?", (now,))  # noqa: S608 (fixed names)

    @staticmethod
    def window_size(conn: sqlite3.Connection, key: str, since: float, deltas: dict[str, int]) -> int:
        """The window's entries younger than `since`: the older ones are deleted here, and what that
        takes off its size is added to `deltas`, which the caller writes (`resize`) before it commits."""
        deleted = conn.execute("DELETE FROM entries WHERE key = ? AND at <= ?", (key, since)).rowcount
        row = conn.execute("SELECT size FROM window_sizes WHERE key = ?", (key,)).fetchone()
        if deleted:
            deltas[key] = deltas.get(key, 0) - deleted
        return (row[0] if row else 0) - deleted

    @staticmethod
    def add_entries(conn: sqlite3.Connection, entries: list[tuple[str, float, float]], deltas: dict[str, int]) -> None:
        """Insert (key, at, expires_at) entries and count them in `deltas`."""
        conn.executemany("INSERT INTO entries VALUES (?, ?, ?)", entries)
        for key, _, _ in entries:
            deltas[key] = deltas.get(key, 0) + 1

    @staticmethod
    def resize(conn: sqlite3.Connection, deltas: dict[str, int]) -> None:
        """Add `deltas` to the windows' sizes (a window that lost one entry and gained one: nothing)."""
        if changed := [(key, delta) for key, delta in deltas.items() if delta]:
            conn.executemany(_RESIZE, changed)

    @staticmethod
    def oldest(conn: sqlite3.Connection, key: str) -> float:
        return conn.execute("SELECT MIN(at) FROM entries WHERE key = ?", (key,)).fetchone()[0]

    @staticmethod
    def counter(conn: sqlite3.Connection, key: str, now: float) -> int:
        row = conn.execute("SELECT value FROM counters WHERE key = ? AND expires_at > ?", (key, now)).fetchone()
        return row[0] if row else 0

    @staticmethod
    def put(conn: sqlite3.Connection, key: str, value: int, expires_at: float) -> None:
        conn.execute(
            "INSERT INTO counters VALUES (?, ?, ?) ON CONFLICT (key) DO UPDATE"
            " SET value = excluded.value, expires_at = excluded.expires_at",
            (key, value, expires_at),
        )

    def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        with self.transaction() as (conn, now):
            row = conn.execute("SELECT value, expires_at FROM counters WHERE key = ? AND expires_at > ?", (key, now))
            value, expires_at = row.fetchone() or (0, now + expiry)
            self.put(conn, key, value + amount, expires_at)
            return value + amount

    def get(self, key: str) -> int:
        with self.transaction() as (conn, now):
            return self.counter(conn, key, now)

    def get_expiry(self, key: str) -> float:
        with self.transaction() as (conn, now):
            row = conn.execute("SELECT expires_at FROM counters WHERE key = ? AND expires_at > ?", (key, now))
            found = row.fetchone()
            return found[0] if found else now

    def check(self) -> bool:
        with self.transaction() as (conn, _):
            conn.execute("SELECT 1")
        return True

    def reset(self) -> int | None:
        with self.transaction() as (conn, _):
            conn.execute("DELETE FROM window_sizes")
            return sum(conn.execute(f"DELETE FROM {table}").rowcount for table in ("counters", "entries", "leases"))  # noqa: S608

    def clear(self, key: str) -> None:
        with self.transaction() as (conn, _):
            conn.execute("DELETE FROM counters WHERE key = ?", (key,))
            conn.execute("DELETE FROM entries WHERE key = ?", (key,))
            conn.execute("DELETE FROM window_sizes WHERE key = ?", (key,))

    def acquire_entry(self, key: str, limit: int, expiry: int, amount: int = 1) -> bool:
        if amount > limit:
            return False
        with self.transaction() as (conn, now):
            deltas: dict[str, int] = {}
            try:
                if self.window_size(conn, key, now - expiry, deltas) + amount > limit:
                    return False
                self.add_entries(conn, [(key, now, now + expiry)] * amount, deltas)
                return True
            finally:
                self.resize(conn, deltas)

    def get_moving_window(self, key: str, limit: int, expiry: int) -> tuple[float, int]:
        with self.transaction() as (conn, now):
            oldest, taken = conn.execute(
                "SELECT MIN(at), COUNT(*) FROM entries WHERE key = ? AND at > ?", (key, now - expiry)
            ).fetchone()
            return (oldest if taken else now), taken
