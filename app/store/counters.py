"""The shared counter stores: rate windows, budget reservations and stream leases.

Rate windows are the `limits` library's moving window, kept where and as the library keeps it
(its key, `LIMITER/<key>/<amount>/<multiples>/<granularity>`, and on Redis its list of entry
times under `jetpero-windows:`; on the embedded store its `entries` rows), so its
`MovingWindowRateLimiter` reads and hits them (`window`, `hit`). A proxied call's admit is one
store call, `take`: every rate window, stream lease and budget reservation that applies, checked
and then taken, all or nothing, in one Lua script on Redis (`_TAKE`: every check first, then
every write, so a refusal writes nothing) and in one `BEGIN IMMEDIATE` transaction on the
embedded store. The script's window check and write are the library's own
(`acquire_moving_window.lua`: the entry at `limit - 1` younger than the window refuses; LPUSH
the client's time, LTRIM to the limit, EXPIRE), so the window is exactly the library's moving
window, whichever path hit it. Why not the library's `hit` for admit: it takes one window per
call, a round trip each, and cannot be undone inside a script of ours (a later refusal then
cost an undo round trip per window taken).

Settle gives stream leases back at once (one Redis pipeline or one transaction: a slot must be
free for the next stream); a budget correction alone rides with the process's next `take`
(`corrections.py`), so a limited call costs one round trip, not two, and no budget is ever
passed: the reservation stands until its correction lands. Two stores, one
interface:

- `RedisCounters` (`JETPERO_REDIS_URL`): exact across every worker of every node.
- `SQLiteCounters` (the default): a `limits` storage over one SQLite file in WAL mode. Each
  check is one write transaction under SQLite's file lock, so it is exact across the worker
  processes of one node, needs nothing installed, and a worker that dies mid-check holds no
  lock (the OS drops it with the process).

Every store failure is raised as `CounterStoreUnavailable`; what the caller then does is its
policy (`JETPERO_LIMITS_ON_STORE_DOWN`).
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

import redis
from limits import RateLimitItem
from limits.errors import StorageError
from limits.storage import RedisStorage, Storage
from limits.strategies import MovingWindowRateLimiter
from limits.util import WindowStats
from redis.backoff import NoBackoff
from redis.retry import Retry

from .corrections import Adjustment, Corrections
from .sqlite_storage import SQLiteStorage

T = TypeVar("T")
STORE_ERRORS = (StorageError, redis.RedisError, sqlite3.Error, OSError)  # what a store call raises when it fails
Window = tuple[str, int, int]  # (the `limits` key: item.key_for(key), limit, expiry s): one entry each
Lease = tuple[str, str, int, float]  # (key, lease id, limit, ttl s)
Budget = tuple[str, int, int, int]  # (key, amount, limit, ttl s)


class CounterStoreUnavailable(RuntimeError):
    """The counter store cannot be reached or cannot answer (its cause is chained)."""


def _guarded(method: Callable[..., T]) -> Callable[..., T]:
    """Turn every store-level error of `method` into CounterStoreUnavailable."""

    @wraps(method)
    def inner(self: Any, *args: Any, **kwargs: Any) -> T:
        try:
            return method(self, *args, **kwargs)
        except STORE_ERRORS as exc:
            raise CounterStoreUnavailable(
                f"the {self.NAME} counter store is unavailable: {type(exc).__name__}"
            ) from exc

    return inner


class CounterStore:
    """Windows through `limits`; `reserve`/`adjust` for budgets; `acquire` for leases; `settle` for both."""

    NAME = "abstract"
    storage: Storage

    def __init__(self) -> None:
        self.limiter = MovingWindowRateLimiter(self.storage)
        self.corrections = Corrections(lambda due: self._settle([], due), self._maybe_applied, STORE_ERRORS)

    @_guarded
    def hit(self, item: RateLimitItem, key: str, cost: int = 1) -> bool:
        """Take `cost` entries of the moving window `item` for `key`; False when it is full."""
        return self.limiter.hit(item, key, cost=cost)

    @_guarded
    def window(self, item: RateLimitItem, key: str) -> WindowStats:
        """(reset time, remaining) of the moving window `item` for `key`."""
        return self.limiter.get_window_stats(item, key)

    @_guarded
    def take(self, windows: list[Window], leases: list[Lease], budgets: list[Budget]) -> tuple[int, float] | None:
        """Check every window, lease and budget, in that order, then take them all: one round trip.

        None when all were taken. Otherwise nothing is taken and the answer is (index of the first
        check that refused, counting windows then leases then budgets, detail): for a window the
        time of its oldest entry (the window reopens `expiry` after it), for a budget its value,
        for a lease 0.
        """
        with self.corrections.carried() as due:
            return self._take(windows, leases, budgets, due)

    @_guarded
    def reserve(self, key: str, amount: int, limit: int, ttl: int) -> tuple[bool, int]:
        """Add `amount` to counter `key` unless it would pass `limit`: (taken, value)."""
        self.corrections.flush()
        return self._reserve(key, amount, limit, ttl)

    @_guarded
    def adjust(self, key: str, delta: int, ttl: int) -> int:
        """Add `delta` (may be negative) to counter `key`; returns the new value."""
        self.corrections.flush()
        return self._adjust(key, delta, ttl)

    @_guarded
    def acquire(self, key: str, lease: str, limit: int, ttl: float) -> bool:
        """Take lease `lease` of `key` unless `limit` live leases exist; a lease lapses after `ttl` s."""
        return self._acquire(key, lease, limit, ttl)

    @_guarded
    def settle(self, leases: list[tuple[str, str]], adjustments: list[Adjustment]) -> None:
        """Drop each (key, lease) (lapsed ones too) and add each (key, delta, ttl): with leases in one
        round trip now (carrying every correction due); corrections alone with the next take."""
        if not leases:
            self.corrections.add(adjustments)
            return
        with self.corrections.carried() as due:
            self._settle(leases, due + adjustments)

    @_guarded
    def flush(self) -> None:
        """Send every correction still due now (at exit; tests)."""
        self.corrections.flush()

    @staticmethod
    def _maybe_applied(exc: BaseException) -> bool:
        """Whether a failed round trip may still have been carried out by the store."""
        return False

    @_guarded
    def ping(self) -> None:
        """Raise CounterStoreUnavailable unless the store answers."""
        if not self.storage.check():
            raise StorageError(ConnectionError("no answer"))

    def _take(
        self, windows: list[Window], leases: list[Lease], budgets: list[Budget], due: list[Adjustment]
    ) -> tuple[int, float] | None:
        raise NotImplementedError

    def _reserve(self, key: str, amount: int, limit: int, ttl: int) -> tuple[bool, int]:
        raise NotImplementedError

    def _adjust(self, key: str, delta: int, ttl: int) -> int:
        raise NotImplementedError

    def _acquire(self, key: str, lease: str, limit: int, ttl: float) -> bool:
        raise NotImplementedError

    def _settle(self, leases: list[tuple[str, str]], adjustments: list[Adjustment]) -> None:
        raise NotImplementedError


_RESERVE = """
local used = tonumber(redis.call('GET', KEYS[1]) or '0')
local amount, limit = tonumber(ARGV[1]), tonumber(ARGV[2])
if used >= limit or used + amount > limit then return {0, used} end
used = redis.call('INCRBY', KEYS[1], amount)
redis.call('EXPIRE', KEYS[1], ARGV[3])
return {1, used}
"""
_ADJUST = """
local value = redis.call('INCRBY', KEYS[1], ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[2])
return value
"""
_TAKE = """
-- KEYS: the windows' keys, then the leases', then the budgets', then the due corrections'.
-- ARGV: now (the client's time, as the limits library's own hit), #windows, #leases, #budgets,
-- #corrections, then (limit, expiry) per window, (lease, limit, ttl) per lease, (amount, limit,
-- ttl) per budget, (delta, ttl) per correction. The corrections (earlier calls' settlements) are
-- applied first, whatever the checks then answer.
local now = tonumber(ARGV[1])
local nw, nl, nb, nd = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local a, t = 6 + 2 * nw + 3 * nl + 3 * nb, 0
for i = nw + nl + nb + 1, nw + nl + nb + nd do
  redis.call('INCRBY', KEYS[i], ARGV[a])
  redis.call('EXPIRE', KEYS[i], ARGV[a + 1])
  a = a + 2
end
a = 6
for i = 1, nw do
  local entry = redis.call('LINDEX', KEYS[i], tonumber(ARGV[a]) - 1)
  if entry and tonumber(entry) >= now - tonumber(ARGV[a + 1]) then return {i, entry} end
  a = a + 2
end
if nl > 0 then
  local time = redis.call('TIME')
  t = tonumber(time[1]) + tonumber(time[2]) / 1000000
end
for i = nw + 1, nw + nl do
  redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', t)  -- lapsed leases only: nothing live is given back
  if redis.call('ZCARD', KEYS[i]) >= tonumber(ARGV[a + 1]) then return {i, '0'} end
  a = a + 3
end
for i = nw + nl + 1, nw + nl + nb do
  local value = redis.call('GET', KEYS[i]) or '0'
  local used, amount, limit = tonumber(value), tonumber(ARGV[a]), tonumber(ARGV[a + 1])
  if used >= limit or used + amount > limit then return {i, value} end
  a = a + 3
end
a = 6
for i = 1, nw do
  local limit = tonumber(ARGV[a])
  redis.call('LPUSH', KEYS[i], now)
  redis.call('LTRIM', KEYS[i], 0, limit - 1)
  redis.call('EXPIRE', KEYS[i], ARGV[a + 1])
  a = a + 2
end
for i = nw + 1, nw + nl do
  local ttl = tonumber(ARGV[a + 2])
  redis.call('ZADD', KEYS[i], t + ttl, ARGV[a])
  redis.call('EXPIRE', KEYS[i], math.ceil(ttl))
  a = a + 3
end
for i = nw + nl + 1, nw + nl + nb do
  redis.call('INCRBY', KEYS[i], ARGV[a])
  redis.call('EXPIRE', KEYS[i], ARGV[a + 2])
  a = a + 3
end
return 0
"""
_ACQUIRE = """
local now = redis.call('TIME')
local t = tonumber(now[1]) + tonumber(now[2]) / 1000000
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', t)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then return 0 end
redis.call('ZADD', KEYS[1], t + tonumber(ARGV[3]), ARGV[1])
redis.call('EXPIRE', KEYS[1], math.ceil(tonumber(ARGV[3])))
return 1
"""


class _Connections:
    """A lean path to Redis for the hot path's two calls (`take`, `settle`): connections of our own.

    redis-py's pool checks each connection it hands out for unread data (`can_read`, a poll);
    under gevent that poll alone costs several times a loopback round trip. These connections
    are only ever put back after every reply was read, so the check is not needed: a call takes
    one (LIFO), sends its commands in one write, reads every reply and puts it back, or drops it
    on any socket error. A reused connection the server closed meanwhile is replaced once (a
    read timeout is not retried: the script may have run). Same settings as the `limits`
    storage's client (timeouts, database, credentials).
    """

    IDLE = 64  # connections kept per process; more are closed once used

    def __init__(self, pool: redis.ConnectionPool):
        self.make = lambda: pool.connection_class(**pool.connection_kwargs)
        self.idle: list = []
        self.pid = os.getpid()

    def run(self, commands: list[tuple]) -> list:
        """The replies to `commands` (an error reply is returned as its ResponseError)."""
        if self.pid != os.getpid():  # forked: the parent's sockets are not ours
            self.idle, self.pid = [], os.getpid()
        while True:
            try:
                conn, reused = self.idle.pop(), True
            except IndexError:
                conn, reused = self.make(), False
            try:
                conn.send_packed_command(conn.pack_commands(commands), check_health=False)
                replies = []
                for _ in commands:
                    try:
                        replies.append(conn.read_response())
                    except redis.ResponseError as exc:  # the connection stays in step
                        replies.append(exc)
            except redis.TimeoutError:
                conn.disconnect()
                raise
            except (redis.ConnectionError, OSError):
                conn.disconnect()
                if reused:  # closed while idle (a restarted server): so are the others
                    while self.idle:
                        try:
                            self.idle.pop().disconnect()
                        except IndexError:  # another thread took the last one
                            break
                    continue
                raise
            except BaseException:
                conn.disconnect()
                raise
            if len(self.idle) < self.IDLE:
                self.idle.append(conn)
            else:
                conn.disconnect()
            return replies


class RedisCounters(CounterStore):
    """Redis (or Valkey) through `limits`' RedisStorage, plus three Lua scripts of our own."""

    NAME = "redis"
    PREFIX = "jetpero"

    def __init__(self, url: str, timeout: float = 0.5):
        self.storage = RedisStorage(
            url,
            key_prefix=f"{self.PREFIX}-windows",
            wrap_exceptions=True,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 1),  # one reconnect (a stale pooled connection), then CounterStoreUnavailable
        )
        self.client = self.storage.get_connection()
        self._reserve_script = self.client.register_script(_RESERVE)
        self._adjust_script = self.client.register_script(_ADJUST)
        self._acquire_script = self.client.register_script(_ACQUIRE)
        self._take_script = self.client.register_script(_TAKE)
        self._lean = _Connections(self.client.connection_pool)
        self._window_prefix = self.storage.prefixed_key("")
        super().__init__()

    def _key(self, key: str) -> str:
        return f"{self.PREFIX}:{key}"

    @staticmethod
    def _maybe_applied(exc: BaseException) -> bool:
        # A timeout waits for a reply to what was sent: the script may have run. (A SQLite error
        # rolls its transaction back, so the embedded store's failures are never ambiguous.)
        return isinstance(exc, redis.TimeoutError)

    def _take(
        self, windows: list[Window], leases: list[Lease], budgets: list[Budget], due: list[Adjustment]
    ) -> tuple[int, float] | None:
        keys = [self._window_prefix + key for key, _, _ in windows]
        args: list = [time.time(), len(windows), len(leases), len(budgets), len(due)]
        for _, limit, expiry in windows:
            args += (limit, expiry)
        for key, lease, limit, ttl in leases:
            keys.append(f"{self.PREFIX}:{key}")
            args += (lease, limit, ttl)
        for key, amount, limit, ttl in budgets:
            keys.append(f"{self.PREFIX}:{key}")
            args += (amount, limit, ttl)
        for key, delta, ttl in due:
            keys.append(f"{self.PREFIX}:{key}")
            args += (delta, ttl)
        script = self._take_script
        (answer,) = self._lean.run([("EVALSHA", script.sha, len(keys), *keys, *args)])
        if isinstance(answer, redis.exceptions.NoScriptError):  # a restarted or flushed server
            (answer,) = self._lean.run([("EVAL", script.script, len(keys), *keys, *args)])
        if isinstance(answer, Exception):
            raise answer
        if answer == 0:
            return None
        index = int(answer[0]) - 1
        return index, float(answer[1]) if index < len(windows) else int(answer[1])

    def _reserve(self, key: str, amount: int, limit: int, ttl: int) -> tuple[bool, int]:
        taken, value = self._reserve_script([self._key(key)], [amount, limit, ttl])
        return bool(taken), int(value)

    def _adjust(self, key: str, delta: int, ttl: int) -> int:
        return int(self._adjust_script([self._key(key)], [delta, ttl]))

    def _acquire(self, key: str, lease: str, limit: int, ttl: float) -> bool:
        return bool(self._acquire_script([self._key(key)], [lease, limit, ttl]))

    def _settle(self, leases: list[tuple[str, str]], adjustments: list[Adjustment]) -> None:
        commands: list[tuple] = [("ZREM", f"{self.PREFIX}:{key}", lease) for key, lease in leases]
        for key, delta, ttl in adjustments:  # plain commands: a script in a pipeline costs a SCRIPT EXISTS first
            commands += (("INCRBY", f"{self.PREFIX}:{key}", delta), ("EXPIRE", f"{self.PREFIX}:{key}", ttl))
        for reply in self._lean.run(commands):  # one pipeline: one write, every reply read
            if isinstance(reply, Exception):
                raise reply


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


def counter_store(redis_url: str, embedded_path: str) -> CounterStore:
    """The store the configuration names: Redis when `JETPERO_REDIS_URL` is set, else embedded."""
    return RedisCounters(redis_url) if redis_url else SQLiteCounters(embedded_path)
