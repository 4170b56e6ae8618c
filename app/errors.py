"""The one table from errors to HTTP, and the one JSON error shape.

Every error body is `{"code": 404, "status": "Not Found", "message": "...", "request_id": "..."}`
(plus `errors` naming the bad fields on 400/422), the shape flask-smorest uses. No body holds a
key, a token, a Vault path or a traceback: messages come from this table, not from exceptions.
"""

from __future__ import annotations

import logging
import traceback
from http import HTTPStatus

from flask import Flask, jsonify, request
from werkzeug.exceptions import HTTPException

from . import observability
from .negative import Throttled
from .proxy.upstream import UpstreamBlocked, UpstreamError, UpstreamTimeout, UpstreamUnreachable
from .rules.tokens import InvalidToken
from .services.audit import AuditUnavailable
from .services.errors import Exists, HasProjects, Invalid, Missing, NotAllowed, Refused
from .store.db import Unavailable as StoreUnavailable
from .vault.errors import Conflict, InvalidRequest, NotFound, PolicyDenied, Unavailable, VaultError

log = logging.getLogger("jetpero.errors")

RETRY_AFTER = "5"

# service error -> (status, message)
TABLE: dict[type[Exception], tuple[int, str]] = {
    Throttled: (503, "Too many requests with unknown token keys right now; retry later."),
    AuditUnavailable: (503, "The audit trail cannot be written, so nothing was changed; retry later."),
    StoreUnavailable: (503, "The database is unavailable; retry later."),
    NotFound: (404, "Not found: check the names in the path."),
    Conflict: (409, "Conflict: it was changed by another request at the same time; read it again and retry."),
    Unavailable: (503, "Vault is unavailable; retry later."),
    PolicyDenied: (500, "Internal error."),
    InvalidRequest: (500, "Internal error."),
    InvalidToken: (401, "Invalid or missing token."),
    # Not the provider's failure but this JetPero's refusal, so not a 5xx (which SDKs retry):
    # the address was stored while allowed, or its name resolves to a private address now.
    UpstreamBlocked: (
        403,
        "This provider's base_url is a loopback, private or link-local address, which this JetPero refuses"
        " (JETPERO_ALLOW_PRIVATE_UPSTREAMS); an admin must point the provider at a public address.",
    ),
    UpstreamUnreachable: (502, "The provider could not be reached."),
    UpstreamTimeout: (504, "The provider did not answer in time."),
}

# domain refusal -> status (their messages are written for the caller)
REFUSALS: dict[type[Refused], int] = {NotAllowed: 403, Missing: 404, Exists: 409, HasProjects: 409, Invalid: 422}

# RFC 6750 §3: no error code when the request had no token at all; `invalid_token` otherwise.
CHALLENGE_MISSING = 'Bearer realm="jetpero"'
CHALLENGE_INVALID = 'Bearer realm="jetpero", error="invalid_token"'


class ApiError(Exception):
    """An error a view or the proxy raises on purpose, with its status and safe message."""

    def __init__(self, status: int, message: str, *, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


def error_response(status: int, message: str, *, errors: dict | None = None, headers: dict | None = None):
    body = {"code": status, "status": HTTPStatus(status).phrase, "message": message}
    if errors:
        body["errors"] = errors
    body["request_id"] = observability.request_id()
    response = jsonify(body)
    response.status_code = status
    for name, value in (headers or {}).items():
        response.headers[name] = value
    if status == 401:
        response.headers.setdefault("WWW-Authenticate", CHALLENGE_MISSING)
    if status == 503:
        response.headers["Retry-After"] = RETRY_AFTER
    return response


def _http(exc: HTTPException):
    if exc.response is not None:  # built on purpose (e.g. a limit's 429 in the provider's error shape)
        return exc.response
    data = getattr(exc, "data", None) or {}
    errors = data.get("messages") if isinstance(data, dict) else None
    if isinstance(errors, dict):  # {location: [...]} (a body that is not JSON): schema-level, as marshmallow names it
        errors = {where: {"_schema": found} if isinstance(found, list) else found for where, found in errors.items()}
    message = data.get("message") if isinstance(data, dict) and data.get("message") else exc.description
    if exc.code == 404 and request.url_rule is None:  # no route matched: werkzeug's text is about browsers
        message = (
            "Nothing here: check the path. Names in it (org, project, provider) are 1-63 lowercase"
            " letters, digits, '-' and '.', starting and ending with a letter or digit."
        )
    headers = {k: v for k, v in (exc.get_headers() if exc.code == 405 else []) if k == "Allow"}
    return error_response(
        exc.code or 500, message or HTTPStatus(exc.code or 500).phrase, errors=errors, headers=headers
    )


def _mapped(exc: Exception) -> tuple[int, str] | None:
    for kind, mapped in TABLE.items():
        if isinstance(exc, kind):
            return mapped
    return None


def status_of(exc: Exception) -> int:
    """The status the handlers registered here answer `exc` with."""
    if isinstance(exc, ApiError):
        return exc.status
    if isinstance(exc, Refused):
        return _refusal_status(exc)
    if isinstance(exc, HTTPException):
        return exc.code or 500
    mapped = _mapped(exc)
    return mapped[0] if mapped else 500


def _service(exc: Exception):
    mapped = _mapped(exc)
    if mapped is None:
        return _unexpected(exc)
    status, message = mapped
    if status == 500:  # our own bug (a policy that denies our call, a request Vault rejects)
        log.error("service error %s", type(exc).__name__)
    elif isinstance(exc, InvalidToken):
        # The body is the same for every reason (no oracle); the reason is here, by request id.
        log.info("token refused: %s", exc.reason, extra={"fields": {"request_id": observability.request_id()}})
        return error_response(
            status,
            message,
            headers={"WWW-Authenticate": CHALLENGE_MISSING if exc.reason == "missing" else CHALLENGE_INVALID},
        )
    return error_response(status, message)


def _api(exc: ApiError):
    return error_response(exc.status, exc.message, headers=exc.headers)


def _refusal_status(exc: Refused) -> int:
    return next(status for kind, status in REFUSALS.items() if isinstance(exc, kind))


def _refused(exc: Refused):
    field = getattr(exc, "field", None)  # an Invalid about one input field names it, as schema errors do
    errors = {"json": {field: [exc.message]}} if field else None
    return error_response(_refusal_status(exc), exc.message, errors=errors)


def _unexpected(exc: Exception):
    # Type and place only: an exception's text or traceback may quote a path or a value.
    frame = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
    where = f"{frame.filename.rsplit('/', 1)[-1]}:{frame.lineno}" if frame else "?"
    log.error("unhandled %s at %s", type(exc).__name__, where)
    return error_response(500, "Internal error.")


def register(app: Flask) -> None:
    app.register_error_handler(HTTPException, _http)
    app.register_error_handler(VaultError, _service)
    app.register_error_handler(InvalidToken, _service)
    app.register_error_handler(StoreUnavailable, _service)  # AuditUnavailable is one
    app.register_error_handler(UpstreamError, _service)
    app.register_error_handler(ApiError, _api)
    app.register_error_handler(Refused, _refused)
    app.register_error_handler(Exception, _unexpected)
