"""Per-worker state: caches for the hot path and the poller that keeps them true.

Nothing here is shared between workers (each gunicorn worker builds its own after the fork).
The poller reads the change feed every `JETPERO_SYNC_INTERVAL` seconds and evicts what a
revocation or an edit made stale. A worker that has not heard from Vault for `stale_after`
seconds treats Vault as unavailable: it cannot promise revocations, so the proxy fails closed.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from operator import itemgetter
from typing import Any

from .negative import Absent, Budget
from .services import changes
from .vault.connection import Vault
from .vault.errors import Unavailable, VaultError

log = logging.getLogger("jetpero.sync")

MAX_ENTRIES = 50_000  # per cache; a full cache is emptied (re-filled from Vault on demand)
SYNC_PAUSE = 0.25  # seconds after a failed on-demand sync before a request may try again


class _Flight:
    """One load of a missing key, which the callers that miss it meanwhile wait for."""

    __slots__ = ("done", "error", "value")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.value = None
        self.error: BaseException | None = None


class Cache(dict):
    """A dict that empties itself rather than grow without bound, and counts its hits.

    `get_or_load` is the way in: a hit, or else `fill`, which loads a missing key once however
    many callers miss it at the same time (a burst of calls with a new token, or after a
    provider change, makes one set of Vault round trips, not one per call), and stores the value
    only if nothing was evicted while it loaded: a revocation applied during the load must not
    be undone by storing what was read before it.
    """

    def __init__(self, name: str, *, expiry: Callable[[Any], float] | None = None):
        super().__init__()
        self.name = name
        self.expiry = expiry  # value -> when it expires (time.time()); a hit past it is loaded again
        self.hits = self.misses = 0  # since the last `take_counts`
        self.generation = 0  # bumped by every eviction
        self._flights: dict = {}  # key -> _Flight of the load in progress
        self._flights_lock = threading.Lock()

    def lookup(self, key):
        value = self.get(key)
        if value is None:
            self.misses += 1
        else:
            self.hits += 1
        return value

    def get_or_load(self, key, load: Callable[..., Any], *args):
        """The cached value of `key`, or `load(*args)`'s (through `fill`, so stored unless an
        eviction happened meanwhile). The arguments rather than a closure: a hit builds nothing."""
        value = self.lookup(key)
        if value is not None and (self.expiry is None or time.time() < self.expiry(value)):
            return value
        return self.fill(key, load, *args)

    def take_counts(self) -> tuple[int, int]:
        counts, self.hits, self.misses = (self.hits, self.misses), 0, 0
        return counts

    def _store(self, key, value) -> None:  # under _flights_lock
        if len(self) >= MAX_ENTRIES:
            self._evicted()
            super().clear()
        self[key] = value

    def fill(self, key, load: Callable[..., Any], *args):
        """`load(*args)`'s value for a key just missed, shared with the callers that miss it meanwhile
        (they also share its exception)."""
        with self._flights_lock:
            flight = self._flights.get(key)
            leader = flight is None
            if leader:
                flight = self._flights[key] = _Flight()
                generation = self.generation
        if not leader:
            flight.done.wait()
            if flight.error is not None:
                raise flight.error
            return flight.value
        try:
            flight.value = load(*args)
        except BaseException as exc:
            flight.error = exc
            raise
        finally:
            with self._flights_lock:
                if flight.error is None and self.generation == generation:
                    self._store(key, flight.value)
                if self._flights.get(key) is flight:  # an eviction meanwhile has let go of it
                    del self._flights[key]
            flight.done.set()
        return flight.value

    # Every way out of the cache bumps the generation and lets go of the loads in progress:
    # a caller that misses from now on starts a load of its own.
    def _evicted(self) -> None:  # under _flights_lock
        self.generation += 1
        self._flights.clear()

    def pop(self, key, default=None):
        with self._flights_lock:
            self._evicted()
            return super().pop(key, default)

    def clear(self) -> None:
        with self._flights_lock:
            self._evicted()
            super().clear()

    def evict(self, predicate) -> None:
        with self._flights_lock:
            self._evicted()
            for key in [key for key, value in list(self.items()) if predicate(key, value)]:
                super().pop(key, None)


class Worker:
    def __init__(self, *, vault: Vault, config):
        self.vault = vault
        vault.on_change = self.apply
        self.config = config
        self.interval: float = config.JETPERO_SYNC_INTERVAL
        self.stale_after: float = max(2.0, 3 * self.interval)
        # token value -> verified claims (+ org/project/origins); kid -> OKPKey;
        # (org, project, provider) -> (record, key); (org, project) -> project record
        self.project_tokens = Cache("project_tokens", expiry=itemgetter("valid_until"))  # exp, or a rotation's retire_at
        self.admin_tokens = Cache("admin_tokens", expiry=itemgetter("exp"))
        self.public_keys = Cache("public_keys")
        self.provider_keys = Cache("provider_keys")
        self.projects = Cache("projects")
        self.absent = Absent()  # what Vault said is not there (unknown kids, dead token ids)
        self.budget = Budget()  # Vault loads that tokens not yet verified may cause
        # (org, project) -> what end-user tokens rest on: origins and trusted IdPs
        self.identity_providers = Cache("identity_providers", expiry=itemgetter("until"))
        self.policies = Cache("policies")  # (org, project, token id) -> Rules; (org, project, provider, "prices")
        self.on_tick: list = []  # called after each poll (e.g. flushing buffered logs)
        self.on_start: list = []  # called once when the worker starts (after the fork)
        self.on_stop: list = []  # called when it stops
        self.readiness: tuple[float, dict] | None = None  # (when, body) of the last /readyz check
        self._seq: int | None = None
        self._last_sync = self._last_try = float("-inf")
        self._sync_lock = threading.RLock()  # one reader of the feed at a time: events apply once, in order
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- freshness ------------------------------------------------------------------------
    def fresh(self) -> bool:
        return time.monotonic() - self._last_sync <= self.stale_after

    def sync_once(self) -> None:
        with self._sync_lock:
            seq, events = changes.read(self.vault)
            if self._seq is not None and seq > self._seq:
                oldest = events[0]["seq"] if events else seq + 1
                if oldest > self._seq + 1:
                    self.clear()  # fell further behind than the feed keeps
                else:
                    for event in events:
                        if event["seq"] > self._seq:
                            self.apply(event)
            self._seq = seq
            self._last_sync = time.monotonic()

    def sync_now(self) -> None:
        """Sync unless another caller just did (one Vault read however many requests wait)."""
        with self._sync_lock:
            if self.fresh():
                return
            if time.monotonic() - self._last_try < SYNC_PAUSE:  # a flood during an outage: one try
                raise Unavailable()
            self._last_try = time.monotonic()
            self.sync_once()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.sync_once()
            except VaultError:
                log.warning("change feed unreachable")
            except Exception as exc:  # noqa: BLE001 - the poller must survive anything
                log.error("change feed poll failed: %s", type(exc).__name__)
            for hook in self.on_tick:
                hook()
            self._stop.wait(self.interval)

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="jetpero-sync", daemon=True)
            self._thread.start()
            for hook in self.on_start:
                hook()

    def stop(self) -> None:
        self._stop.set()
        for hook in self.on_stop:
            hook()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def caches(self) -> tuple[Cache, ...]:
        return (
            self.project_tokens,
            self.admin_tokens,
            self.public_keys,
            self.provider_keys,
            self.projects,
            self.identity_providers,
            self.policies,
        )

    def report_caches(self, report) -> None:
        """Hand each cache's hit and miss counts since the last call to `report(name, hits, misses)`."""
        for cache in self.caches():
            report(cache.name, *cache.take_counts())

    # -- eviction -------------------------------------------------------------------------
    def clear(self) -> None:
        for cache in self.caches():
            cache.clear()
        self.absent.clear()

    def apply(self, event: dict) -> None:
        """Evict what one change made stale (also called at once by the worker that made it)."""
        kind, org, project = event.get("kind"), event.get("org"), event.get("project")
        self.absent.forget(org, project)  # a new project, a rotated key...: no longer absent

        def in_project(value: dict) -> bool:
            return value.get("org") == org and (project is None or value.get("project") == project)

        if kind in ("token-revoked", "token-retiring"):  # the token and the child tokens minted from it
            self.project_tokens.evict(lambda _, v: event.get("token") in (v["jti"], v.get("parent")))
        elif kind == "identity-provider-changed":  # and the end-user tokens minted from its JWTs
            self.identity_providers.pop((org, project), None)
            self.project_tokens.evict(lambda _, v: in_project(v) and v.get("idp") == event.get("idp"))
        elif kind == "provider-changed":
            self.provider_keys.pop((org, project, event.get("provider")), None)
        elif kind == "policy-changed":
            self.policies.evict(lambda k, _: k[0] == org and k[1] == project)
        elif kind == "project-updated":
            self.projects.pop((org, project), None)
            self.identity_providers.pop((org, project), None)
            self.project_tokens.evict(lambda _, v: in_project(v))
        elif kind in ("project-deleted", "org-deleted"):
            self.project_tokens.evict(lambda _, v: in_project(v))
            self.provider_keys.evict(lambda k, _: k[0] == org and (project is None or k[1] == project))
            self.projects.evict(lambda k, _: k[0] == org and (project is None or k[1] == project))
            self.identity_providers.evict(lambda k, _: k[0] == org and (project is None or k[1] == project))
            self.policies.evict(lambda k, _: k[0] == org and (project is None or k[1] == project))
            prefix = f"{org}/{project}/" if project else f"{org}/"
            self.public_keys.evict(lambda k, _: k.startswith(prefix))
            self.admin_tokens.evict(lambda _, v: kind == "org-deleted" and v.get("org") == org)
        elif kind == "signing-key-retired":  # tokens of the retired versions are verified again, and refused
            prefix = f"{org}/{project}/" if org else "admin/"
            self.public_keys.evict(lambda k, _: k.startswith(prefix))
            (self.project_tokens if org else self.admin_tokens).evict(lambda _, v: not org or in_project(v))
        elif kind == "member-removed":
            self.admin_tokens.evict(lambda _, v: v.get("member") == event.get("member"))
