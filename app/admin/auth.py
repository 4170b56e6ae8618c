"""Who the bearer of an admin token is: verified once per request, before any input is read.

Refused admin calls (401, 403) are security events on the audit trail, with the reason kept
server-side. An anonymous flood must not fill the database: at most `REFUSALS_PER_MINUTE`
records per client IP per minute per worker (and `REFUSALS_PER_WORKER` in all); the rest are
only counted (`jetpero_audit_refusals_unrecorded_total`).
"""

from __future__ import annotations

import threading
import time

from flask import current_app, g, request

from .. import access
from ..observability import metrics
from ..rules.tokens import InvalidToken
from ..services import audit
from ..services.actor import ANONYMOUS, Actor

REFUSALS_PER_MINUTE = 20  # per client IP
REFUSALS_PER_WORKER = 600  # per minute, every IP together


def bearer() -> str:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise InvalidToken("missing")
    return value.strip()


def actor() -> Actor:
    """The request's acting principal, from its verified admin token."""
    if "actor" not in g:
        g.actor = Actor.from_admin_claims(access.admin_token(current_app.extensions["jetpero"], bearer()))
    return g.actor


def authenticate() -> None:
    """before_request hook: a missing or bad admin token is a 401 before any input is read."""
    try:
        actor()
    except InvalidToken as exc:
        g.refusal = f"admin token refused: {exc.reason}"
        raise


class RefusalBudget:
    """How many refusals may still be recorded this minute, per client IP and in all."""

    def __init__(self, per_ip: int = REFUSALS_PER_MINUTE, total: int = REFUSALS_PER_WORKER) -> None:
        self.per_ip, self.total = per_ip, total
        self._lock = threading.Lock()
        self._minute = 0
        self._counts: dict[str | None, int] = {}
        self._all = 0

    def take(self, ip: str | None) -> bool:
        minute = int(time.monotonic() // 60)
        with self._lock:
            if minute != self._minute:  # a new minute: every budget is whole again
                self._minute, self._counts, self._all = minute, {}, 0
            used = self._counts.get(ip, 0)
            if used >= self.per_ip or self._all >= self.total:
                return False
            self._counts[ip] = used + 1
            self._all += 1
            return True


budget = RefusalBudget()


def record_refusal(response):
    """after_request hook: a 401 or 403 answer becomes an `auth.refused` / `access.refused` event."""
    status = response.status_code
    if status not in (401, 403):
        return response
    if not budget.take(request.remote_addr):
        metrics.audit_refusal_unrecorded()
        return response
    who = g.get("actor") or Actor(kind=ANONYMOUS)
    args = request.view_args or {}
    target = audit.Target(args.get("org") or args.get("slug") or who.org, args.get("project"))
    if status == 401:
        action, reason = "auth.refused", g.get("refusal", "admin token refused")
    else:
        body = response.get_json(silent=True) or {}
        action, reason = "access.refused", f"{request.method} {request.url_rule}: {body.get('message', 'forbidden')}"
    audit.refused(who, action, target, reason=reason)
    return response
