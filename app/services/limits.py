"""Rate limits, concurrent streams and budgets: admitted before forwarding, settled after.

`Limits(store, on_store_down).admit(subjects, policy, estimate)` checks every limit that applies
to the caller (its token, its end user, its client IP), all or nothing: a refused check gives
back what the earlier ones took. Budgets are reserved up front (`Estimate`) and
`Limits.settle(admission, actual_tokens, cost)` corrects them to the real count and drops the
stream lease. A caller with no limit never touches the store.
"""

from __future__ import annotations

import calendar
import hashlib
import json
import logging
import math
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal

from limits import RateLimitItem, RateLimitItemPerDay, RateLimitItemPerMinute, RateLimitItemPerSecond

from ..rules.policy import Estimate, Policy, Subjects
from ..store.counters import CounterStore, CounterStoreUnavailable

log = logging.getLogger(__name__)

MICROS = Decimal(1_000_000)  # cost counters hold millionths of a currency unit
_WINDOWS = {
    "requests_per_second": RateLimitItemPerSecond,
    "requests_per_minute": RateLimitItemPerMinute,
    "requests_per_day": RateLimitItemPerDay,
}
_BUDGETS = {  # field: (unit, period)
    "tokens_per_day": ("tokens", "day"),
    "tokens_per_month": ("tokens", "month"),
    "cost_per_day": ("cost", "day"),
    "cost_per_month": ("cost", "month"),
}
_WHO = {"ip": "this client address", "user": "this end user", "token": "this token"}


@dataclass(frozen=True)
class Refusal:
    """Why a request is not forwarded; names only the caller's own limit."""

    status: int
    type: str  # rate_limit_exceeded | insufficient_quota | service_unavailable
    code: str
    message: str
    retry_after: int
    policy: str = ""  # RateLimit-Policy field value (draft-ietf-httpapi-ratelimit-headers)
    ratelimit: str = ""  # RateLimit field value


@dataclass
class Admission:
    """The outcome of `admit`: what was taken, to be settled after the call."""

    refusal: Refusal | None = None
    reservations: list[tuple[str, str, int, int]] = field(default_factory=list)  # (key, unit, amount, ttl)
    leases: list[tuple[str, str]] = field(default_factory=list)  # (key, lease id)
    degraded: bool = False  # admitted without checks: the store was down and the policy is `allow`
    settled: bool = False

    @property
    def admitted(self) -> bool:
        return self.refusal is None


def _key(kind: str, subjects: Subjects, level: str) -> str:
    ident = {"token": subjects.token, "user": subjects.user, "ip": subjects.ip}[level]
    digest = hashlib.blake2b(f"{subjects.project}\0{ident}".encode(), digest_size=16).hexdigest()
    return f"{kind}:{level}:{digest}"


def _period(period: str, now: float) -> tuple[str, int, int]:
    """The period's name (part of its counter's key), its length and the seconds until it ends (UTC)."""
    day = datetime.fromtimestamp(now, UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "day":
        return day.strftime("%Y-%m-%d"), 86400, math.ceil(day.timestamp() + 86400 - now)
    length = calendar.monthrange(day.year, day.month)[1] * 86400
    return day.strftime("%Y-%m"), length, math.ceil(day.replace(day=1).timestamp() + length - now)


def _name(level: str, limit: str) -> str:
    return f"{level}-{limit.replace('_', '-')}"


class Limits:
    """The limits engine over one counter store; `on_store_down` is `refuse` or `allow`."""

    def __init__(
        self, store: CounterStore, on_store_down: str = "refuse", lease_ttl: float = 630.0, down_retry_after: int = 5
    ):
        self.store = store
        self.on_store_down = on_store_down
        self.lease_ttl = lease_ttl  # a dead worker's stream lease lapses after this (> the upstream deadline)
        self.down_retry_after = down_retry_after

    def admit(self, subjects: Subjects, policy: Policy, estimate: Estimate) -> Admission:
        """Check and take every applicable limit before forwarding; all or nothing."""
        levels = [
            (level, limits)
            for level, limits in (("ip", policy.ip), ("user", policy.user), ("token", policy.token))
            if not limits.empty and getattr(subjects, level) is not None
        ]
        if not levels:
            return Admission()
        admission = Admission()
        undo: list = []
        try:
            for level, limits in levels:
                for name, item_class in _WINDOWS.items():
                    if (amount := getattr(limits, name)) is not None:
                        refusal = self._window(item_class(amount), _key("rate", subjects, level), level, name, undo)
                        if refusal:
                            return self._refuse(refusal, undo)
            for level, limits in levels:
                if estimate.stream and limits.concurrent_streams is not None:
                    key, lease = _key("streams", subjects, level), uuid.uuid4().hex
                    if not self.store.acquire(key, lease, limits.concurrent_streams, self.lease_ttl):
                        return self._refuse(self._streams_refusal(level, limits.concurrent_streams), undo)
                    admission.leases.append((key, lease))
                    undo.append(lambda k=key, le=lease: self.store.settle([(k, le)], []))
            for level, limits in levels:
                for name, (unit, period) in _BUDGETS.items():
                    if (limit := getattr(limits, name)) is not None:
                        refusal = self._budget(admission, subjects, level, name, limit, unit, period, estimate, undo)
                        if refusal:
                            return self._refuse(refusal, undo)
        except CounterStoreUnavailable:
            self._undo(undo)
            log.warning("counter store unavailable; on_store_down=%s", self.on_store_down)
            if self.on_store_down == "allow":
                return Admission(degraded=True)
            return Admission(
                refusal=Refusal(
                    503,
                    "service_unavailable",
                    "limits_unavailable",
                    "The rate-limit store is unavailable; retry shortly.",
                    self.down_retry_after,
                )
            )
        return admission

    def settle(self, admission: Admission, actual_tokens: int, cost: Decimal = Decimal(0)) -> bool:
        """Correct the reservations to the real spend and drop the stream lease; once; False if the store failed."""
        if admission.settled or not admission.admitted:
            return True
        admission.settled = True
        actual = {"tokens": actual_tokens, "cost": int(cost * MICROS)}
        adjustments = [(key, actual[unit] - amount, ttl) for key, unit, amount, ttl in admission.reservations]
        adjustments = [change for change in adjustments if change[1]]
        if not (admission.leases or adjustments):
            return True
        try:
            self.store.settle(admission.leases, adjustments)
        except CounterStoreUnavailable:
            log.warning("counter store unavailable at settle: reservations stand, leases lapse by themselves")
            return False
        return True

    def _window(self, item: RateLimitItem, key: str, level: str, name: str, undo: list) -> Refusal | None:
        if self.store.hit(item, key):
            undo.append(lambda: self.store.unhit(item, key))
            return None
        reset, remaining = self.store.window(item, key)
        retry = max(1, math.ceil(reset - time.time()))
        policy = _name(level, name)
        return Refusal(
            429,
            "rate_limit_exceeded",
            name,
            f"Rate limit reached for {_WHO[level]}: {item.amount} requests per {item.GRANULARITY.name}."
            f" Retry in {retry} s.",
            retry,
            f'"{policy}";q={item.amount};w={item.get_expiry()}',
            f'"{policy}";r={max(remaining, 0)};t={retry}',
        )

    def _streams_refusal(self, level: str, limit: int) -> Refusal:
        policy = _name(level, "concurrent_streams")
        return Refusal(
            429,
            "rate_limit_exceeded",
            "concurrent_streams",
            f"Too many concurrent streams for {_WHO[level]}: at most {limit}. Retry when one ends.",
            1,
            f'"{policy}";q={limit};qu="concurrent-requests"',
            f'"{policy}";r=0;t=1',
        )

    def _budget(
        self,
        admission: Admission,
        subjects: Subjects,
        level: str,
        name: str,
        limit: int | Decimal,
        unit: str,
        period: str,
        estimate: Estimate,
        undo: list,
    ) -> Refusal | None:
        now = time.time()
        label, length, left = _period(period, now)
        key = f"{_key('budget', subjects, level)}:{name}:{label}"
        amount = estimate.tokens if unit == "tokens" else int(estimate.cost * MICROS)
        cap = int(limit) if unit == "tokens" else int(Decimal(limit) * MICROS)
        ttl = left + 86400  # outlives its period by a day, so a late settle still finds it
        taken, used = self.store.reserve(key, amount, cap, ttl)
        if taken:
            admission.reservations.append((key, unit, amount, ttl))
            undo.append(lambda: self.store.adjust(key, -amount, ttl))
            return None
        what = f"{limit} tokens" if unit == "tokens" else f"a cost of {limit}"
        why = "is used up" if used >= cap else f"has too little left for this request (up to {amount} reserved)"
        policy = _name(level, name)
        return Refusal(
            429,
            "insufficient_quota",
            name,
            f"The budget of {what} per {period} for {_WHO[level]} {why}. It renews in {left} s.",
            left,
            f'"{policy}";q={cap};w={length}',
            f'"{policy}";r={max(cap - used, 0)};t={left}',
        )

    def _refuse(self, refusal: Refusal, undo: list) -> Admission:
        self._undo(undo)
        return Admission(refusal=refusal)

    def _undo(self, undo: list) -> None:
        for step in reversed(undo):
            try:
                step()
            except CounterStoreUnavailable:
                log.warning("counter store unavailable while undoing a refused admit; the rest lapses by itself")
                return


def refusal_response(refusal: Refusal) -> tuple[int, dict[str, str], bytes]:
    """The refusal in OpenAI's error shape: (status, headers, JSON body), with Retry-After and RateLimit fields."""
    headers = {"Content-Type": "application/json", "Retry-After": str(refusal.retry_after)}
    if refusal.policy:
        headers |= {"RateLimit-Policy": refusal.policy, "RateLimit": refusal.ratelimit}
    body = {"error": {"message": refusal.message, "type": refusal.type, "param": None, "code": refusal.code}}
    return refusal.status, headers, json.dumps(body).encode()
