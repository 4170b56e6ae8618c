"""The embedded counter store (the default): one SQLite file, exact across the workers of one node.

Windows through `limits` over `SQLiteStorage`; `take` and settle as one `BEGIN IMMEDIATE`
transaction each. See `counters.py` for the interface and `sqlite_storage.py` for the file.
"""

from __future__ import annotations

import sqlite3

from .corrections import Adjustment
from .counters import Budget, CounterStore, Lease, Window
from .sqlite_storage import SQLiteStorage


class SQLiteCounters(CounterStore):
    """The embedded store: exact across the worker processes of one node."""

    NAME = "embedded"

    def __init__(self, path: str, busy_timeout: float = 5.0):
        self.storage = SQLiteStorage(f"jetpero+sqlite://{path}", busy_timeout=busy_timeout)
        super().__init__()

    def _take(
        self, windows: list[Window], leases: list[Lease], budgets: list[Budget], due: list[Adjustment]
    ) -> tuple[int, float] | None:
        with self.storage.transaction() as (conn, now):
            storage = self.storage
            for key, delta, ttl in due:  # earlier calls' settlements, whatever the checks answer
                storage.put(conn, key, storage.counter(conn, key, now) + delta, now + ttl)
            sizes: dict[str, int] = {}  # the windows' size changes, written whatever the answer
            try:
                return self._check_and_take(conn, now, windows, leases, budgets, sizes)
            finally:
                storage.resize(conn, sizes)

    def _check_and_take(
        self,
        conn: sqlite3.Connection,
        now: float,
        windows: list[Window],
        leases: list[Lease],
        budgets: list[Budget],
        sizes: dict[str, int],
    ) -> tuple[int, float] | None:
        """`_take`'s checks then writes, in its transaction: every check first, so a refusal writes nothing."""
        execute, storage = conn.execute, self.storage
        for index, (key, limit, expiry) in enumerate(windows):  # the checks of SQLiteStorage.acquire_entry
            if storage.window_size(conn, key, now - expiry, sizes) >= limit:
                return index, storage.oldest(conn, key)
        base = len(windows)
        for index, (key, _, limit, _) in enumerate(leases, base):
            execute("DELETE FROM leases WHERE key = ? AND expires_at <= ?", (key, now))
            if execute("SELECT COUNT(*) FROM leases WHERE key = ?", (key,)).fetchone()[0] >= limit:
                return index, 0.0
        base += len(leases)
        used = []
        for index, (key, amount, limit, _) in enumerate(budgets, base):
            value = storage.counter(conn, key, now)
            if value >= limit or value + amount > limit:
                return index, float(value)
            used.append(value)
        if windows:
            storage.add_entries(conn, [(k, now, now + e) for k, _, e in windows], sizes)
        if leases:
            conn.executemany(
                "INSERT OR REPLACE INTO leases VALUES (?, ?, ?)", [(k, le, now + ttl) for k, le, _, ttl in leases]
            )
        for (key, amount, _, ttl), value in zip(budgets, used, strict=True):
            storage.put(conn, key, value + amount, now + ttl)
        return None

    def _reserve(self, key: str, amount: int, limit: int, ttl: int) -> tuple[bool, int]:
        with self.storage.transaction() as (conn, now):
            used = self.storage.counter(conn, key, now)
            if used >= limit or used + amount > limit:
                return False, used
            self.storage.put(conn, key, used + amount, now + ttl)
            return True, used + amount

    def _adjust(self, key: str, delta: int, ttl: int) -> int:
        with self.storage.transaction() as (conn, now):
            value = self.storage.counter(conn, key, now) + delta
            self.storage.put(conn, key, value, now + ttl)
            return value

    def _acquire(self, key: str, lease: str, limit: int, ttl: float) -> bool:
        with self.storage.transaction() as (conn, now):
            conn.execute("DELETE FROM leases WHERE key = ? AND expires_at <= ?", (key, now))
            (live,) = conn.execute("SELECT COUNT(*) FROM leases WHERE key = ?", (key,)).fetchone()
            if live >= limit:
                return False
            conn.execute("INSERT OR REPLACE INTO leases VALUES (?, ?, ?)", (key, lease, now + ttl))
            return True

    def _settle(self, leases: list[tuple[str, str]], adjustments: list[Adjustment]) -> None:
        with self.storage.transaction() as (conn, now):
            conn.executemany("DELETE FROM leases WHERE key = ? AND lease = ?", leases)
            for key, delta, ttl in adjustments:
                self.storage.put(conn, key, self.storage.counter(conn, key, now) + delta, now + ttl)
