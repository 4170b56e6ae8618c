"""JetPero configuration: every setting comes from one environment variable.

The table in README.md ("Configuration") lists each variable, its default and
meaning; `Config.VARIABLES` is the same table in code, so the two are checked
against each other by the tests.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass


class ConfigError(RuntimeError):
    """A required variable is missing or a value cannot be used."""


def _str(value: str) -> str:
    return value


def _bool(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off", ""}:
        return False
    raise ValueError("expected true or false")


def _positive_float(value: str) -> float:
    number = float(value)
    if not number > 0:
        raise ValueError("expected a number greater than 0")
    return number


def _store_down(value: str) -> str:
    if value not in {"refuse", "allow"}:
        raise ValueError("expected refuse or allow")
    return value


def _positive_int(value: str) -> int:
    number = int(value)
    if number <= 0:
        raise ValueError("expected a whole number greater than 0")
    return number


@dataclass(frozen=True)
class Variable:
    name: str
    default: str | None  # None: required
    parse: Callable[[str], object]
    help: str


class Config:
    """Settings read once at start-up; `Config.from_env()` validates them all."""

    VARIABLES = (
        Variable("VAULT_ADDR", None, _str, "URL of the Vault/OpenBao server."),
        Variable(
            "VAULT_APPROLE_FILE",
            None,
            _str,
            "JSON file with the app's AppRole `role_id` and `secret_id` (written by `flask bootstrap`).",
        ),
        Variable("VAULT_CACERT", "", _str, "CA bundle used to verify Vault's TLS certificate (empty: system CAs)."),
        Variable(
            "VAULT_TIMEOUT",
            "5",
            _positive_float,
            "Seconds before a Vault call is abandoned (the API then answers 503).",
        ),
        Variable("JETPERO_ISSUER", "jetpero", _str, "`iss` claim of every token JetPero signs."),
        Variable(
            "JETPERO_MAX_TOKEN_TTL", "7776000", _positive_int, "Longest project-token lifetime in seconds (90 days)."
        ),
        Variable(
            "JETPERO_ADMIN_TOKEN_TTL",
            "2592000",
            _positive_int,
            "Lifetime in seconds of member and operator admin tokens (30 days).",
        ),
        Variable(
            "JETPERO_SYNC_INTERVAL",
            "1",
            _positive_float,
            "Seconds between each worker's poll of the change feed (revocation bound).",
        ),
        Variable(
            "JETPERO_ALLOW_PRIVATE_UPSTREAMS",
            "false",
            _bool,
            "Allow provider base URLs on loopback, private or link-local addresses.",
        ),
        Variable("JETPERO_UPSTREAM_CONNECT_TIMEOUT", "10", _positive_float, "Seconds to connect to a provider."),
        Variable(
            "JETPERO_UPSTREAM_READ_TIMEOUT",
            "120",
            _positive_float,
            "Seconds of provider silence before a proxied call fails (504), or its streamed body is cut"
            " (checked every quarter of it, at most each second).",
        ),
        Variable(
            "JETPERO_UPSTREAM_DEADLINE",
            "600",
            _positive_float,
            "Longest total duration in seconds of one proxied call, streams included.",
        ),
        Variable("JETPERO_UPSTREAM_CA_BUNDLE", "", _str, "CA bundle for provider TLS (empty: certifi's)."),
        Variable(
            "JETPERO_METRICS_TOKEN", "", _str, "Bearer token that /metrics requires; empty: /metrics is off (404)."
        ),
        Variable(
            "JETPERO_REDIS_URL",
            "",
            _str,
            "Redis URL of the shared counters (rate limits, budgets, streams); empty: the embedded store.",
        ),
        Variable(
            "JETPERO_COUNTERS_PATH",
            ".data/counters.sqlite3",
            _str,
            "SQLite file of the embedded counter store (exact across one node's workers; unused with Redis).",
        ),
        Variable(
            "JETPERO_LIMITS_ON_STORE_DOWN",
            "refuse",
            _store_down,
            "What a limited token gets when the counter store is down: `refuse` (503 + Retry-After) or `allow`.",
        ),
        Variable("JETPERO_LOG_LEVEL", "INFO", _str, "Log level of the JSON logs."),
        Variable("JETPERO_BIND", "127.0.0.1:8000", _str, "Address gunicorn listens on."),
        Variable("JETPERO_WORKERS", "2", _positive_int, "gunicorn worker processes (gevent workers)."),
    )

    def __init__(self, values: dict[str, object]):
        self._values = values
        for key, value in values.items():
            setattr(self, key, value)

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None, **overrides: object) -> Config:
        """Read and validate every variable; raise ConfigError naming the first bad one."""
        environ = os.environ if environ is None else environ
        values: dict[str, object] = {}
        for var in cls.VARIABLES:
            if var.name in overrides:
                values[var.name] = overrides[var.name]
                continue
            raw = environ.get(var.name)
            if raw is None or (raw == "" and var.default is None):
                if var.default is None:
                    raise ConfigError(f"{var.name} is required: {var.help}")
                raw = var.default
            try:
                values[var.name] = var.parse(raw)
            except ValueError as exc:
                raise ConfigError(f"{var.name}={raw!r} is invalid: {exc}") from None
        return cls(values)

    def as_dict(self) -> dict[str, object]:
        return dict(self._values)
