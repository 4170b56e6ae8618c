"""JetPero configuration: every setting comes from one environment variable.

The table in README.md ("Configuration") lists each variable, its default and
meaning; `Config.VARIABLES` is the same table in code, so the two are checked
against each other by the tests.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar


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


def _count(value: str) -> int:
    number = int(value)
    if number < 0:
        raise ValueError("expected a whole number, 0 or more")
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


def setting(default: str | None, parse: Callable[[str], object], meaning: str) -> Any:
    """One `Config` field: its environment variable's default (None: required), parser and meaning."""
    return field(metadata={"default": default, "parse": parse, "help": meaning})


@dataclass(frozen=True)
class Config:
    """Settings read once at start-up; `Config.from_env()` validates them all. Each field is the
    environment variable of the same name; `Config.VARIABLES` lists them in order."""

    VARIABLES: ClassVar[tuple[Variable, ...]]

    VAULT_ADDR: str = setting(None, _str, "URL of the Vault/OpenBao server.")
    VAULT_APPROLE_FILE: str = setting(
        None,
        _str,
        "JSON file with the app's AppRole `role_id` and `secret_id` (written by `flask bootstrap`).",
    )
    VAULT_CACERT: str = setting("", _str, "CA bundle used to verify Vault's TLS certificate (empty: system CAs).")
    VAULT_TIMEOUT: float = setting(
        "5",
        _positive_float,
        "Seconds before a Vault call is abandoned (the API then answers 503).",
    )
    JETPERO_ISSUER: str = setting("jetpero", _str, "`iss` claim of every token JetPero signs.")
    JETPERO_MAX_TOKEN_TTL: int = setting(
        "7776000",
        _positive_int,
        "Longest project-token lifetime in seconds (90 days).",
    )
    JETPERO_MAX_END_USER_TTL: int = setting(
        "3600",
        _positive_int,
        "Longest lifetime in seconds of an exchanged or child end-user token.",
    )
    JETPERO_JWKS_TIMEOUT: float = setting(
        "5", _positive_float, "Seconds to fetch an identity provider's JWKS (connect and read each)."
    )
    JETPERO_ADMIN_TOKEN_TTL: int = setting(
        "2592000",
        _positive_int,
        "Lifetime in seconds of member and operator admin tokens (30 days).",
    )
    JETPERO_SYNC_INTERVAL: float = setting(
        "1",
        _positive_float,
        "Seconds between each worker's poll of the change feed (revocation bound).",
    )
    JETPERO_ALLOW_PRIVATE_UPSTREAMS: bool = setting(
        "false",
        _bool,
        "Allow provider base URLs on loopback, private or link-local addresses.",
    )
    JETPERO_UPSTREAM_CONNECT_TIMEOUT: float = setting("10", _positive_float, "Seconds to connect to a provider.")
    JETPERO_UPSTREAM_READ_TIMEOUT: float = setting(
        "120",
        _positive_float,
        "Seconds of provider silence before a proxied call fails (504), or its streamed body is cut"
        " (checked every quarter of it, at most each second).",
    )
    JETPERO_UPSTREAM_DEADLINE: float = setting(
        "600",
        _positive_float,
        "Longest total duration in seconds of one proxied call, streams included.",
    )
    JETPERO_MAX_REQUEST_BYTES: int = setting(
        "33554432",
        _positive_int,
        "Largest request body in bytes the proxy forwards (32 MiB): a larger declared one is answered 413"
        " at once, a chunked one growing past it is cut (the provider's request aborted).",
    )
    JETPERO_UPSTREAM_CA_BUNDLE: str = setting("", _str, "CA bundle for provider TLS (empty: certifi's).")
    JETPERO_METRICS_TOKEN: str = setting("", _str, "Bearer token that /metrics requires; empty: /metrics is off (404).")
    JETPERO_DATABASE_URL: str = setting(
        "sqlite:///.data/jetpero.db",
        _str,
        "SQL database of the audit trail and usage records: `sqlite:///path` (one node) or"
        " `postgresql+psycopg://user:password@host/db` (several nodes). Migrated at start.",
    )
    JETPERO_USAGE_QUEUE: int = setting(
        "100000",
        _positive_int,
        "Usage records a worker holds while the database is unavailable; past it they are dropped"
        " (counted as `jetpero_usage_dropped_total`).",
    )
    JETPERO_USAGE_LOG: bool = setting(
        "true",
        _bool,
        "Write one usage record per proxied call (model, token counts, timings); false: none (for comparison).",
    )
    JETPERO_USAGE_STREAM_SECONDS: int = setting(
        "300",
        _positive_int,
        "Seconds a live usage stream (SSE) stays open; the browser's EventSource then reconnects.",
    )
    JETPERO_TOKEN_RECORD_RETENTION_DAYS: int = setting(
        "30",
        _positive_int,
        "Days a project token's record is kept once it has expired or been revoked; then it is pruned"
        " (its history stays in the audit trail).",
    )
    JETPERO_REDIS_URL: str = setting(
        "", _str, "Redis URL of the shared counters (rate limits, budgets, streams); empty: the embedded store."
    )
    JETPERO_COUNTERS_PATH: str = setting(
        ".data/counters.sqlite3",
        _str,
        "SQLite file of the embedded counter store (exact across one node's workers; unused with Redis).",
    )
    JETPERO_LIMITS_ON_STORE_DOWN: str = setting(
        "refuse",
        _store_down,
        "What a limited token gets when the counter store is down: `refuse` (503 + Retry-After) or `allow`.",
    )
    JETPERO_LOG_LEVEL: str = setting("INFO", _str, "Log level of the JSON logs.")
    JETPERO_TRUSTED_PROXIES: int = setting(
        "0",
        _count,
        "Reverse proxies in front of JetPero whose `X-Forwarded-For/-Proto/-Host` are trusted"
        " (0: none, the client IP is the socket's).",
    )
    JETPERO_PROVIDER_KEY_VERSIONS: int = setting(
        "100",
        _positive_int,
        "Versions of each provider record a project's KV keeps (its key history; older ones are dropped).",
    )
    JETPERO_TRANSIT_AUTO_ROTATE: int = setting(
        "90",
        _count,
        "Days after which Vault rotates each project's encryption and signing keys by itself (0: never).",
    )
    JETPERO_TOKEN_ROTATION_GRACE: int = setting(
        "86400",
        _count,
        "Longest grace in seconds a rotated project token keeps working beside its replacement.",
    )
    JETPERO_ROTATION_INTERVAL: float = setting(
        "3600",
        _positive_float,
        "Seconds between runs of the rotation job (key settings, rewrap, key-age metric), one node at a time.",
    )
    JETPERO_BIND: str = setting("127.0.0.1:8000", _str, "Address gunicorn listens on.")
    JETPERO_WORKERS: int = setting("2", _positive_int, "gunicorn worker processes (gevent workers).")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: object) -> Config:
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
        return cls(**values)


Config.VARIABLES = tuple(Variable(name=f.name, **f.metadata) for f in fields(Config))
