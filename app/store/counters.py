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

- `RedisCounters` (`redis_counters.py`, `JETPERO_REDIS_URL`): exact across every worker of
  every node.
- `SQLiteCounters` (`sqlite_counters.py`, the default): a `limits` storage over one SQLite file
  in WAL mode. Each
  check is one write transaction under SQLite's file lock, so it is exact across the worker
  processes of one node, needs nothing installed, and a worker that dies mid-check holds no
  lock (the OS drops it with the process).

Every store failure is raised as `CounterStoreUnavailable`; what the caller then does is its
policy (`JETPERO_LIMITS_ON_STORE_DOWN`).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

import redis
from limits import RateLimitItem
from limits.errors import StorageError
from limits.storage import Storage
from limits.strategies import MovingWindowRateLimiter
from limits.util import WindowStats

from .corrections import Adjustment, Corrections

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


def counter_store(redis_url: str, embedded_path: str) -> CounterStore:
    """The store the configuration names: Redis when `JETPERO_REDIS_URL` is set, else embedded."""
    if redis_url:
        from .redis_counters import RedisCounters

        return RedisCounters(redis_url)
    from .sqlite_counters import SQLiteCounters

    return SQLiteCounters(embedded_path)
