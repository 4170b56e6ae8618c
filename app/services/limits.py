"""Rate limits, concurrent streams and budgets: admitted before forwarding, settled after.

`Limits(store, on_store_down).admit(subjects, policy, estimate)` checks every limit that applies
to the caller (its token, its end user, its client IP), all or nothing and in one store round
trip (`CounterStore.take`: one Lua script on Redis, one transaction on the embedded store): a
refused check leaves every window, lease and budget as it was, so there is nothing to give back.
The refusal is built from what `take` answers (the refusing window's oldest entry, the budget's
value), with no second read. Budgets are reserved up front (`Estimate`) and
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
from functools import lru_cache

from limits import RateLimitItem, RateLimitItemPerDay, RateLimitItemPerMinute, RateLimitItemPerSecond

from ..rules.policy import Estimate, LimitSet, Policy, Subjects
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


@lru_cache(maxsize=8192)
def _digest(project: str, ident: str) -> str:
    return hashlib.blake2b(f"{project}\0{ident}".encode(), digest_size=16).hexdigest()


def _key(kind: str, subjects: Subjects, level: str) -> str:
    ident = {"token": subjects.token, "user": subjects.user, "ip": subjects.ip}[level]
    return f"{kind}:{level}:{_digest(subjects.project, ident)}"


@lru_cache(maxsize=64)
def _item(name: str, amount: int) -> RateLimitItem:
    return _WINDOWS[name](amount)


@lru_cache(maxsize=4096)
def _plan(limits: LimitSet) -> tuple[list, int | None, list] | None:
    """A limit set's checks, worked out once per set (policies are cached per worker): None if it has none.

    (rate windows as (name, item), concurrent streams or None, budgets as (name, limit, unit, period, cap)).
    """
    if limits.empty:
        return None
    rates = [(name, _item(name, amount)) for name in _WINDOWS if (amount := getattr(limits, name)) is not None]
    budgets = [
        (name, limit, unit, period, int(limit) if unit == "tokens" else int(Decimal(limit) * MICROS))
        for name, (unit, period) in _BUDGETS.items()
        if (limit := getattr(limits, name)) is not None
    ]
    return rates, limits.concurrent_streams, budgets


@lru_cache(maxsize=8)
def _period_of_day(period: str, day: int) -> tuple[str, int, float]:
    """The period that UTC day number `day` is in: its name, its length and when it ends."""
    start = datetime.fromtimestamp(day * 86400, UTC)
    if period == "day":
        return start.strftime("%Y-%m-%d"), 86400, start.timestamp() + 86400
    length = calendar.monthrange(start.year, start.month)[1] * 86400
    return start.strftime("%Y-%m"), length, start.replace(day=1).timestamp() + length


def _period(period: str, now: float) -> tuple[str, int, int]:
    """The period's name (part of its counter's key), its length and the seconds until it ends (UTC)."""
    label, length, end = _period_of_day(period, int(now // 86400))
    return label, length, math.ceil(end - now)


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
        """Check and take every applicable limit before forwarding; all or nothing, in one store call."""
        levels = [
            (level, plan)
            for level, limits in (("ip", policy.ip), ("user", policy.user), ("token", policy.token))
            if getattr(subjects, level) is not None and (plan := _plan(limits)) is not None
        ]
        if not levels:
            return Admission()
        now = time.time()
        windows, leases, budgets = [], [], []
        checks: list[tuple] = []  # per window, then lease, then budget: what its refusal names
        admission = Admission()
        for level, (rates, _, _) in levels:
            key = _key("rate", subjects, level)
            for name, item in rates:
                windows.append((item.key_for(key), item.amount, item.get_expiry()))
                checks.append((level, name, item))
        for level, (_, streams, _) in levels:
            if estimate.stream and streams is not None:
                key, lease = _key("streams", subjects, level), uuid.uuid4().hex
                leases.append((key, lease, streams, self.lease_ttl))
                admission.leases.append((key, lease))
                checks.append((level, streams))
        for level, (_, _, funds) in levels:
            for name, limit, unit, period, cap in funds:
                label, length, left = _period(period, now)
                key = f"{_key('budget', subjects, level)}:{name}:{label}"
                amount = estimate.tokens if unit == "tokens" else int(estimate.cost * MICROS)
                ttl = left + 86400  # outlives its period by a day, so a late settle still finds it
                budgets.append((key, amount, cap, ttl))
                admission.reservations.append((key, unit, amount, ttl))
                checks.append((level, name, limit, unit, period, amount, cap, length, left))
        try:
            refused = self.store.take(windows, leases, budgets)
        except CounterStoreUnavailable:
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
        if refused is None:
            return admission
        index, detail = refused
        if index < len(windows):
            refusal = self._window_refusal(*checks[index], oldest=detail)
        elif index < len(windows) + len(leases):
            refusal = self._streams_refusal(*checks[index])
        else:
            refusal = self._budget_refusal(*checks[index], used=int(detail))
        return Admission(refusal=refusal)

    def settle(self, admission: Admission, actual_tokens: int, cost: Decimal = Decimal(0)) -> bool:
        """Correct the reservations to the real spend and drop the stream lease; once. A correction
        alone rides with the store's next take (`CounterStore.settle`); False if the store failed."""
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

    @staticmethod
    def _window_refusal(level: str, name: str, item: RateLimitItem, oldest: float) -> Refusal:
        retry = max(1, math.ceil(oldest + item.get_expiry() - time.time()))  # when the oldest entry leaves
        policy = _name(level, name)
        return Refusal(
            429,
            "rate_limit_exceeded",
            name,
            f"Rate limit reached for {_WHO[level]}: {item.amount} requests per {item.GRANULARITY.name}."
            f" Retry in {retry} s.",
            retry,
            f'"{policy}";q={item.amount};w={item.get_expiry()}',
            f'"{policy}";r=0;t={retry}',  # refused: every entry of the window is taken
        )

    @staticmethod
    def _streams_refusal(level: str, limit: int) -> Refusal:
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

    @staticmethod
    def _budget_refusal(
        level: str,
        name: str,
        limit: int | Decimal,
        unit: str,
        period: str,
        amount: int,
        cap: int,
        length: int,
        left: int,
        used: int,
    ) -> Refusal:
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


def refusal_response(refusal: Refusal) -> tuple[int, dict[str, str], bytes]:
    """The refusal in OpenAI's error shape: (status, headers, JSON body), with Retry-After and RateLimit fields."""
    headers = {"Content-Type": "application/json", "Retry-After": str(refusal.retry_after)}
    if refusal.policy:
        headers |= {"RateLimit-Policy": refusal.policy, "RateLimit": refusal.ratelimit}
    body = {"error": {"message": refusal.message, "type": refusal.type, "param": None, "code": refusal.code}}
    return refusal.status, headers, json.dumps(body).encode()
