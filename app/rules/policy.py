"""Limit policies (pure): what a token, an end user or a client IP may spend, and what a request may.

A project's `LimitSet` is the default for its tokens and a ceiling: a token's own limit applies
only where it is tighter (`Policy.resolve`, `LimitSet.within`), so no token is ever looser than its
project. Unset fields are no limit. `Estimate` is what admission reserves.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from decimal import Decimal
from functools import cached_property


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

    def within(self, ceiling: LimitSet) -> LimitSet:
        """Field by field the tighter of these limits and `ceiling`'s (unset: the other's)."""
        tighter = {}
        for f in fields(self):
            own, cap = getattr(self, f.name), getattr(ceiling, f.name)
            tighter[f.name] = cap if own is None else own if cap is None else min(own, cap)
        return LimitSet(**tighter)

    @classmethod
    def parse(cls, data: dict) -> LimitSet:
        """A LimitSet from its JSON form (costs as decimal strings); ValueError names the bad field."""
        unknown = sorted(set(data) - {f.name for f in fields(cls)})
        if unknown:
            raise ValueError(f"{unknown[0]} is not a limit (known: {', '.join(f.name for f in fields(cls))})")
        values = {}
        for name, value in data.items():
            if value is None:
                continue
            if name.startswith("cost_"):
                try:
                    values[name] = Decimal(str(value))
                except ArithmeticError:
                    raise ValueError(f"{name} must be a decimal number, not {value!r}") from None
                if not values[name].is_finite():
                    raise ValueError(f"{name} must be a finite number, not {value!r}")
            elif isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"{name} must be a whole number, not {value!r}")
            else:
                values[name] = value
        return cls(**values)

    def as_json(self) -> dict:
        """The set limits as JSON values (costs as decimal strings)."""
        return {
            f.name: str(value) if isinstance(value, Decimal) else value
            for f in fields(self)
            if (value := getattr(self, f.name)) is not None
        }

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
        return cls(token=token_own.within(project_defaults), user=user, ip=ip)

    @cached_property
    def empty(self) -> bool:
        return self.token.empty and self.user.empty and self.ip.empty

    @cached_property
    def costs(self) -> bool:
        """Whether any cost budget applies (then a request's model needs a price)."""
        return any(s.cost_per_day is not None or s.cost_per_month is not None for s in (self.token, self.user, self.ip))

    @cached_property
    def reads_body(self) -> bool:
        """Whether admission needs the request body (budgets reserve `max_tokens`; streams are leased)."""
        return (
            any(
                s.concurrent_streams is not None or s.tokens_per_day is not None or s.tokens_per_month is not None
                for s in (self.token, self.user, self.ip)
            )
            or self.costs
        )


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

    @classmethod
    def parse(cls, data: dict) -> Price:
        """A Price from `{"input_per_1k": "0.0025", "output_per_1k": "0.01"}`; ValueError names the field."""
        if not isinstance(data, dict) or set(data) != {"input_per_1k", "output_per_1k"}:
            raise ValueError("a price is {input_per_1k, output_per_1k}, both decimal numbers of 0 or more")
        values = {}
        for name, value in data.items():
            try:
                values[name] = Decimal(str(value)) if not isinstance(value, bool) else Decimal("nan")
            except ArithmeticError:
                values[name] = Decimal("nan")
            if not values[name].is_finite() or values[name] < 0:
                raise ValueError(f"{name} must be a decimal number of 0 or more, not {value!r}")
        return cls(**values)

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
