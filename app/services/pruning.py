"""Pruning: token records expired or revoked more than `JETPERO_TOKEN_RECORD_RETENTION_DAYS` ago
are deleted from their project's KV, so token lists do not grow without bound.

A pruned token stays refused: the proxy refuses a token whose record is gone, and an expired one
fails on its `exp` anyway. Its history lives on in the audit trail (`token.issued`,
`token.revoked`); each run that deletes records writes one `token.pruned` record with the count
(on the operator chain: one run spans every org).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from calendar import timegm

from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from ..store import leases
from ..store.db import Unavailable as StoreUnavailable
from ..vault import kv
from ..vault.connection import Vault
from ..vault.errors import NotFound, VaultError
from ..vault.layout import KV, ORGS, REGISTRY, TOKENS, record
from . import audit, projects
from .actor import Actor
from .common import read_each

log = logging.getLogger("jetpero.pruning")

DAY = 86_400
JOB = Actor(kind="job", id="token-pruning")
LEASE = "token-pruning"


def _ended_at(data: dict) -> float | None:
    """When the token stopped working (revocation or expiry, the earlier), epoch seconds."""
    ends = [float(data["expires_at"])] if isinstance(data.get("expires_at"), int | float) else []
    if data.get("revoked_at"):
        ends.append(timegm(time.strptime(data["revoked_at"], "%Y-%m-%dT%H:%M:%SZ")))
    return min(ends) if ends else None


def stale(vault: Vault, org: str, project: str, cutoff: float) -> list[str]:
    """Ids of the project's token records that stopped working before `cutoff` (epoch seconds)."""
    ids = [name for name in vault.project(org, project, lambda c: kv.keys(c, KV, TOKENS)) if not name.endswith("/")]

    def read(token_id: str) -> dict:
        return vault.project(org, project, lambda c: kv.read(c, KV, record(TOKENS, token_id)))[0]

    return [
        token_id
        for token_id, data in zip(ids, read_each(read, ids), strict=True)
        if data is not None and (ended := _ended_at(data)) is not None and ended < cutoff
    ]


def prune_tokens(vault: Vault, retention_days: int, *, now: float | None = None) -> int:
    """Delete every token record, in every project, that stopped working more than
    `retention_days` ago; return how many. Needs a bound audit trail (AuditUnavailable if none):
    nothing is deleted unless the `token.pruned` record is written first."""
    cutoff = (time.time() if now is None else now) - retention_days * DAY
    found: dict[tuple[str, str], list[str]] = {}
    for org in sorted(vault.app(lambda c: kv.keys(c, REGISTRY, ORGS))):
        try:
            for project in projects.slugs(vault, org):
                if ids := stale(vault, org, project, cutoff):
                    found[(org, project)] = ids
        except NotFound:  # deleted meanwhile
            continue
    count = sum(len(ids) for ids in found.values())
    if not count:
        return 0
    detail = f"{count} token records expired or revoked over {retention_days} days ago"
    with audit.changing(JOB, "token.pruned", audit.Target(), detail=detail):
        for (org, project), ids in found.items():
            for token_id in ids:
                _delete(vault, org, project, token_id)
    return count


def _delete(vault: Vault, org: str, project: str, token_id: str) -> None:
    try:
        vault.project(org, project, lambda c: kv.delete(c, KV, record(TOKENS, token_id)))
    except NotFound:  # its project was deleted meanwhile
        pass


class PruningJob:
    """A worker tick hook: every `every` seconds, `prune_tokens` in a thread of its own (the tick
    is never delayed), by whichever worker of whichever node holds the database lease."""

    def __init__(
        self, vault: Vault, engine: Engine, retention_days: int, *, every: float = 3600, holder: str | None = None
    ):
        self.vault, self.engine, self.retention_days, self.every = vault, engine, retention_days, every
        self.holder = holder or f"{socket.gethostname()}:{os.getpid()}"
        self._due = time.monotonic() + every  # a period after start: retention is counted in days

    def __call__(self) -> None:
        if time.monotonic() < self._due:
            return
        self._due = time.monotonic() + self.every
        threading.Thread(target=self.run, name="token-pruning", daemon=True).start()

    def run(self, *, now: float | None = None) -> int | None:
        """One run: the count pruned, or None when another holder has the lease or it failed."""
        try:
            if not leases.acquire(self.engine, LEASE, self.holder, self.every):
                return None
            with audit.bound(self.engine, audit.Context(request_id="job:token-pruning")):
                count = prune_tokens(self.vault, self.retention_days, now=now)
        except (SQLAlchemyError, StoreUnavailable, VaultError) as exc:
            log.warning("token records not pruned: %s (retried next period)", type(exc).__name__)
            return None
        if count:
            log.info("token records pruned", extra={"fields": {"pruned": count}})
        return count
