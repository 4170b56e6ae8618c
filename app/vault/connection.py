"""One connection to Vault per worker: the app's AppRole identity and project-scoped tokens.

Every hvac call goes through `Vault.run`, which translates hvac/requests errors once (see
`errors.py`) and re-authenticates when a token has expired. The app identity only manages
lifecycle (namespaces, mounts, policies, org records); everything inside a project runs with
a token bound to that project's own policy, minted in the project's namespace.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from typing import TypeVar

import hvac
import hvac.exceptions as hx
import requests

from .errors import Conflict, InvalidRequest, NotFound, PolicyDenied, Unavailable
from .layout import PROJECT_TOKEN_ROLE, project_namespace

T = TypeVar("T")

log = logging.getLogger("jetpero.vault")

PROJECT_TOKEN_TTL = 3600  # seconds; re-minted when 80% of it is gone
_RENEW_FRACTION = 0.8


# Vault cannot serve us right now: sealed or down (503), not initialised (501), our login refused
# (401: a secret_id revoked or expired, fixed by the operator, not by the caller), overloaded
# (429), a standby not yet caught up (412), or failing (500/502).
_UNAVAILABLE = (
    hx.VaultDown,
    hx.VaultNotInitialized,
    hx.Unauthorized,
    hx.PreconditionFailed,
    hx.InternalServerError,
    hx.BadGateway,
    hx.RateLimitExceeded,
)


def translate(exc: Exception) -> Exception:
    """Map an hvac/requests exception to the service layer's own, without its text."""
    if isinstance(exc, hx.InvalidPath):
        return NotFound()
    if isinstance(exc, hx.Forbidden):
        return PolicyDenied()
    if isinstance(exc, hx.InvalidRequest):
        text = " ".join(getattr(exc, "errors", None) or [str(exc)])
        if "check-and-set" in text or "already in use" in text or "already exists" in text:
            return Conflict()
        if "no handler for route" in text or "not found" in text:
            return NotFound()
        return InvalidRequest()
    if isinstance(exc, _UNAVAILABLE):
        log.warning("Vault unavailable: it answered %s", type(exc).__name__)  # the operator's clue
        return Unavailable()
    if isinstance(exc, (requests.exceptions.RequestException, ConnectionError, TimeoutError)):
        return Unavailable()
    if isinstance(exc, hx.UnexpectedError):
        return Unavailable()
    return exc


class Vault:
    """Authenticated access to Vault for one worker (thread- and greenlet-safe)."""

    def __init__(self, *, addr: str, approle_file: str, timeout: float, cacert: str = ""):
        self.addr = addr.rstrip("/")
        self.timeout = timeout
        self._approle_file = approle_file
        self._session = requests.Session()
        self._session.trust_env = False  # an HTTPS_PROXY must never see Vault traffic
        self._verify: str | bool = cacert or True
        self._lock = threading.Lock()
        self._app_token: tuple[str, float] | None = None
        self._project_tokens: dict[tuple[str, str], tuple[str, float]] = {}
        self.on_change: Callable[[dict], None] | None = None  # set by the worker's state
        self.observer: Callable[[str, float, str | None], None] | None = None  # (identity, seconds, error)

    # -- clients -------------------------------------------------------------------------
    def _client(self, token: str | None, namespace: str | None) -> hvac.Client:
        return hvac.Client(
            url=self.addr,
            token=token,
            namespace=namespace or None,
            session=self._session,
            timeout=self.timeout,
            verify=self._verify,
        )

    def _login(self) -> tuple[str, float]:
        try:
            with open(self._approle_file, encoding="utf-8") as fh:
                creds = json.load(fh)
            role_id, secret_id = creds["role_id"], creds["secret_id"]
        except (OSError, ValueError, KeyError, TypeError):
            raise Unavailable() from None
        client = self._client(None, None)
        auth = client.auth.approle.login(role_id=role_id, secret_id=secret_id, use_token=False)["auth"]
        ttl = auth.get("lease_duration") or 3600
        return auth["client_token"], time.monotonic() + ttl * _RENEW_FRACTION

    def _app_client(self, namespace: str | None, fresh: bool) -> hvac.Client:
        with self._lock:
            current = self._app_token
        if fresh or current is None or current[1] <= time.monotonic():
            current = self._login()
            with self._lock:
                self._app_token = current
        return self._client(current[0], namespace)

    def _project_client(self, org: str, project: str, fresh: bool) -> hvac.Client:
        key = (org, project)
        with self._lock:
            current = self._project_tokens.get(key)
        if fresh or current is None or current[1] <= time.monotonic():
            namespace = project_namespace(org, project)

            def mint(client: hvac.Client) -> tuple[str, float]:
                auth = client.auth.token.create(role_name=PROJECT_TOKEN_ROLE, ttl=f"{PROJECT_TOKEN_TTL}s")["auth"]
                lease = auth.get("lease_duration") or PROJECT_TOKEN_TTL
                return auth["client_token"], time.monotonic() + lease * _RENEW_FRACTION

            current = self.app(mint, namespace=namespace)
            with self._lock:
                self._project_tokens[key] = current
        return self._client(current[0], project_namespace(org, project))

    def forget_project(self, org: str, project: str) -> None:
        with self._lock:
            self._project_tokens.pop((org, project), None)

    # -- running calls -------------------------------------------------------------------
    def _run(self, identity: str, make: Callable[[bool], hvac.Client], fn: Callable[[hvac.Client], T]) -> T:
        started, error = time.perf_counter(), None
        try:
            return self._attempt(make, fn)
        except Exception as exc:
            error = type(exc).__name__
            raise
        finally:
            if self.observer is not None:
                self.observer(identity, time.perf_counter() - started, error)

    def _attempt(self, make: Callable[[bool], hvac.Client], fn: Callable[[hvac.Client], T]) -> T:
        for attempt in (0, 1):
            try:
                return fn(make(attempt == 1))
            except hx.Forbidden:
                if attempt == 0:
                    continue  # an expired token looks the same: re-authenticate once
                raise PolicyDenied() from None
            except Exception as exc:  # noqa: BLE001 - translated once, here
                translated = translate(exc)
                if translated is exc:
                    raise
                raise translated from None
        raise AssertionError("unreachable")

    def app(self, fn: Callable[[hvac.Client], T], *, namespace: str | None = None) -> T:
        """Run `fn` with the app's own (provisioner) identity, optionally in a namespace."""
        return self._run("app", lambda fresh: self._app_client(namespace, fresh), fn)

    def project(self, org: str, project: str, fn: Callable[[hvac.Client], T]) -> T:
        """Run `fn` with the project-scoped token, inside the project's namespace."""
        return self._run("project", lambda fresh: self._project_client(org, project, fresh), fn)

    def health(self) -> dict:
        """Vault's own health endpoint (unauthenticated)."""
        try:
            response = self._session.get(
                f"{self.addr}/v1/sys/health",
                params={"standbyok": "true", "perfstandbyok": "true"},
                timeout=self.timeout,
                verify=self._verify,
            )
            return response.json()
        except (requests.exceptions.RequestException, ValueError):
            raise Unavailable() from None
