"""What keeps an anonymous caller from making a worker call Vault at will.

A token is checked against Vault before its signature only for its public key, the first time
its `kid` is seen. A forged `kid` (an unknown org, project or key version) would cost Vault
round trips on every request. So:

- `Absent` remembers what Vault said is not there (an unknown project's key set, an unknown key
  version, a token id without a record or revoked), per (org, project), for `ttl` seconds or
  until the change feed says something in that project (or org) changed: a new project, a
  rotated key. Bounded: past `size` entries the oldest go.
- `Budget` caps the misses of the Vault loads that unverified tokens cause: per scope (a
  project's kids, or the admin key set) and for the whole worker, as token buckets. A load past
  it is refused without Vault (`Throttled`, a 503 with Retry-After), whatever the request.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Hashable

from .vault.errors import Unavailable

Scope = tuple[str, str | None]  # (org, project), or ("admin", None) for the admin key set


class Throttled(Unavailable):
    """Too many Vault loads for unknown keys right now: refused without calling Vault."""


class Absent:
    """Keys Vault said do not exist, each under a scope the change feed can clear."""

    def __init__(self, *, size: int = 10_000, ttl: float = 60.0) -> None:
        self.size, self.ttl = size, ttl
        self._entries: OrderedDict[Hashable, tuple[Scope, float]] = OrderedDict()
        self._lock = threading.Lock()

    def __contains__(self, key: Hashable) -> bool:
        entry = self._entries.get(key)
        return entry is not None and time.monotonic() < entry[1]

    def add(self, key: Hashable, scope: Scope) -> None:
        with self._lock:
            self._entries[key] = (scope, time.monotonic() + self.ttl)
            self._entries.move_to_end(key)
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)

    def forget(self, org: str | None, project: str | None = None) -> None:
        """Drop what is remembered under `org` (all of it when None), or under one of its projects."""
        with self._lock:
            if org is None:
                self._entries.clear()
                return
            for key, ((entry_org, entry_project), _) in list(self._entries.items()):
                if entry_org == org and (project is None or entry_project in (project, None)):
                    del self._entries[key]

    def clear(self) -> None:
        self.forget(None)


class _Bucket:
    __slots__ = ("level", "when")

    def __init__(self, burst: float) -> None:
        self.level, self.when = burst, time.monotonic()

    def fill(self, rate: float, burst: float, now: float) -> None:
        self.level = min(burst, self.level + (now - self.when) * rate)
        self.when = now


class Budget:
    """Token buckets of misses: `rate` a second per scope (`burst` at once), `total_rate` for the
    worker. A load takes one before it starts (so concurrent ones cannot overrun it) and gives it
    back if it found what it looked for: loads that succeed cost nothing, misses are capped."""

    def __init__(self, *, rate: float = 0.5, burst: float = 3, total_rate: float = 2, total_burst: float = 10):
        self.rate, self.burst, self.total_rate, self.total_burst = rate, burst, total_rate, total_burst
        self._total = _Bucket(total_burst)
        self._scopes: dict[Scope, _Bucket] = {}
        self._lock = threading.Lock()

    def spend(self, scope: Scope) -> None:
        """Take one miss for `scope`, or raise Throttled (nothing taken)."""
        now = time.monotonic()
        with self._lock:
            if len(self._scopes) > 10_000:
                self._scopes.clear()
            bucket = self._scopes.setdefault(scope, _Bucket(self.burst))
            bucket.fill(self.rate, self.burst, now)
            self._total.fill(self.total_rate, self.total_burst, now)
            if bucket.level < 1 or self._total.level < 1:
                raise Throttled()
            bucket.level -= 1
            self._total.level -= 1

    def refund(self, scope: Scope) -> None:
        """The load `spend` allowed found its key: it was no miss."""
        with self._lock:
            if bucket := self._scopes.get(scope):
                bucket.level = min(self.burst, bucket.level + 1)
            self._total.level = min(self.total_burst, self._total.level + 1)
