"""Limit policies (pure): what a token, an end user or a client IP may spend, and what a request may.

A project's `LimitSet` is the default for its tokens and a token's own overrides it field by
field (`Policy.resolve`); unset fields are no limit. `Estimate` is what admission reserves.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from decimal import Decimal


@dataclass(frozen=True)
class LimitSet:
    """The limits of one subject; None: no limit of that kind. Costs are in currency units."""

    requests_per_second: int | None = None
    requests_per_minute: int | None = None
    requests_per_day: int | None = None
    concurrent_streams: int | None = None
    tokens_per_day: int | None = None
    tokens_per_month: int | None = None
    cost_per_day: Decimal | None = None
    cost_per_month: Decimal | None = None

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if value is not None and (isinstance(value, bool) or not value > 0):
                raise ValueError(f"{f.name} must be greater than 0 (or unset for no limit), not {value!r}")

    def over(self, defaults: LimitSet) -> LimitSet:
        """These limits where set, `defaults` elsewhere (a token's own over its project's)."""
        own = {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}
        return replace(defaults, **own)

    @property
    def empty(self) -> bool:
        return all(getattr(self, f.name) is None for f in fields(self))


@dataclass(frozen=True)
class Policy:
    """What applies to one request: the token's effective limits, per end user, per client IP."""

    token: LimitSet = LimitSet()
    user: LimitSet = LimitSet()
    ip: LimitSet = LimitSet()

    @classmethod
    def resolve(
        cls, project_defaults: LimitSet, token_own: LimitSet, user: LimitSet = LimitSet(), ip: LimitSet = LimitSet()
    ) -> Policy:
        return cls(token=token_own.over(project_defaults), user=user, ip=ip)


@dataclass(frozen=True)
class Subjects:
    """Who is calling: limits are kept per project and token, per end user, per client IP."""

    project: str
    token: str
    user: str | None = None
    ip: str | None = None


@dataclass(frozen=True)
class Price:
    """A model's price per 1,000 input and output tokens (set on the provider)."""

    input_per_1k: Decimal
    output_per_1k: Decimal

    def cost(self, input_tokens: int, output_tokens: int) -> Decimal:
        return (self.input_per_1k * input_tokens + self.output_per_1k * output_tokens) / 1000


@dataclass(frozen=True)
class Estimate:
    """What one request may spend, reserved before forwarding; `stream` takes a stream lease."""

    tokens: int = 0
    cost: Decimal = Decimal(0)
    stream: bool = False

    @classmethod
    def of(
        cls,
        max_tokens: int | None,
        default_tokens: int,
        body_bytes: int,
        price: Price | None,
        stream: bool,
        bytes_per_token: int = 1,
    ) -> Estimate:
        """Completion: `max_tokens`, else the configured default; prompt: one token per `bytes_per_token` body bytes.

        With the default 1 the prompt's share is an upper bound for text (a token is at least a byte);
        neither images nor a request without `max_tokens` have one.
        """
        prompt = -(-body_bytes // bytes_per_token)
        completion = max_tokens if max_tokens is not None else default_tokens
        cost = price.cost(prompt, completion) if price else Decimal(0)
        return cls(tokens=prompt + completion, cost=cost, stream=stream)
