"""The proxy's phases, in the order `run` calls them:

    admit   who is calling, and may they: project token, freshness, origin, scope, then the
            concerns' `admit` (IP allowlists, rate limits, budget reservations)
    resolve the provider record and its key
    forward the request rewritten (URL, headers, key) and sent; the answer's head read
    relay   the answer back: an error body read whole and scrubbed, a success body streamed
            chunk by chunk (each handed to the concerns' observers)
    settle  once per call, however it ended: the concerns' `settle` (usage, budget settlement)

A refused or failed call is settled before its error answer is built; a relayed one when the
server closes its body (complete, cut, or the client gone). What concerns see: `call.Call`.
"""

from __future__ import annotations

import logging
import time
from functools import partial

from flask import Response
from werkzeug.exceptions import RequestEntityTooLarge

from .. import access, observability
from ..errors import ApiError, status_of
from ..rules.slugs import is_slug
from ..rules.tokens import InvalidToken
from ..services import projects, provider_keys
from ..state import Worker
from ..vault.errors import NotFound
from .call import Call, Concerns
from .forward import (
    BadPath,
    inject,
    is_event_stream,
    request_headers,
    response_headers,
    scrub,
    token_from,
    upstream_url,
)
from .upstream import CHUNK, Upstream

log = logging.getLogger("jetpero.proxy")

ERROR_BODY_LIMIT = 1 << 20  # error bodies are read whole (to scrub them) up to this size
SMALL_BODY = 65536  # request bodies up to this size are read at once; larger ones stream
NOT_CONFIGURED = "That provider is not configured for this project."
TOO_LARGE = "The request body is larger than this server accepts ({limit} bytes, JETPERO_MAX_REQUEST_BYTES)."
UPLOAD_SLOW = "The request body did not arrive in time (JETPERO_UPSTREAM_DEADLINE, JETPERO_UPSTREAM_READ_TIMEOUT)."


def run(call: Call, worker: Worker, upstream: Upstream, concerns: Concerns) -> Response:
    """The phases in order; a raised error is settled, then answered by `app/errors.py`."""
    try:
        admit(call, worker, concerns)
    except Exception as exc:
        _settle_raised(call, concerns, exc, "refused")
        _drain(call.request)
        raise
    try:
        resolve(call, worker)
        forward(call, upstream)
        return relay(call, upstream, concerns)
    except Exception as exc:
        _settle_raised(call, concerns, exc, "failed")
        raise


def _drain(req) -> None:
    """Read a small body the refusal left unread: a server closing a connection with unread
    bytes resets it (TCP RST), and the client may lose the refusal (a browser's fetch fails)."""
    length = req.content_length
    if length and length <= SMALL_BODY:
        try:
            req.stream.read(length)
        except (OSError, ValueError):
            pass  # the client went away or sent less: nothing left to lose


def admit(call: Call, worker: Worker, concerns: Concerns) -> None:
    """Let the call in or raise: body size (413), token (401), Vault freshness (503), origin and
    scope (403)."""
    req = call.request
    limit = req.max_content_length = worker.config.JETPERO_MAX_REQUEST_BYTES  # not the admin API's
    if (req.content_length or 0) > limit:  # answered before any of it is read
        raise ApiError(413, TOO_LARGE.format(limit=limit))
    token = call.token = token_from(call.environ)
    if not token:
        raise InvalidToken("missing")
    if not worker.fresh():  # fail closed when this worker cannot vouch it has seen every revocation
        worker.sync_now()  # Unavailable when Vault cannot be reached
    claims = call.claims = access.project_token(worker, token)
    entry = call.environ[observability.ENTRY]  # the request line's fields
    entry["org"], entry["project"], entry["provider"] = claims["org"], claims["project"], call.provider
    if call.origin and not _origin_allowed(worker, claims, call.origin):
        raise ApiError(403, "This origin is not allowed for this project.")
    scope = claims["providers"]
    if call.provider not in scope and "*" not in scope:
        raise ApiError(403, "This token's scope does not include that provider.")
    for hook in concerns.admit:
        hook(call)


def _origin_allowed(worker: Worker, claims: dict, origin: str) -> bool:
    allowed = claims["origins"]  # the token's own, or else its project's
    if allowed is None:
        key = (claims["org"], claims["project"])
        allowed = worker.projects.get_or_load(key, projects.get, worker.vault, *key)["allowed_origins"]
    return origin in allowed


def resolve(call: Call, worker: Worker) -> None:
    """The provider's record and key (404 if the project has no such provider)."""
    claims = call.claims
    key = (claims["org"], claims["project"], call.provider)
    call.record, call.key = worker.provider_keys.get_or_load(key, _provider_key, worker.vault, key)


def _provider_key(vault, key: tuple[str, str, str]) -> tuple[dict, str]:
    if not is_slug(key[2]):  # never a Vault path segment unless it is a provider name
        raise ApiError(404, NOT_CONFIGURED)
    try:
        return provider_keys.load_with_key(vault, *key)
    except NotFound:
        raise ApiError(404, NOT_CONFIGURED) from None


def forward(call: Call, upstream: Upstream) -> None:
    """Send the request to the provider, key injected, and read its answer's head."""
    req, record = call.request, call.record
    try:
        url = upstream_url(record["base_url"], call.path, req.query_string, drop_param=record.get("auth_name"))
    except BadPath:
        raise ApiError(400, "The path cannot be forwarded.") from None
    headers = request_headers(call.environ, extra_drop=record.get("auth_name"))
    url = inject(headers, url, record, call.key)
    body, length = _body(call, upstream)
    if length is not None:
        headers["Content-Length"] = str(length)
    call.sent = time.monotonic()
    chunked = body is not None and length is None
    answer = call.answer = upstream.send(call.method, url, body=body, headers=headers, chunked=chunked)
    call.upstream_ms = call.environ[observability.ENTRY]["upstream_ms"] = (time.monotonic() - call.sent) * 1000
    call.status = answer.status
    if "x-request-id" in answer.headers:
        call.environ[observability.UPSTREAM_REQUEST_ID] = True


def _body(call: Call, upstream: Upstream):
    """(body, Content-Length) as urllib3 should send them: (None, None), (bytes, n) for a small
    body, else chunks read as urllib3 sends them (`_upload`), with their length if declared."""
    req = call.request
    length = req.content_length
    if length is not None:
        call.bytes_in = length
        if length <= SMALL_BODY:  # one send with the headers instead of two
            return (req.stream.read(length) if length else None), (length or None)
        return _upload(call, upstream, req.stream, counted=False), length
    if call.environ.get("HTTP_TRANSFER_ENCODING", "").lower() == "chunked":
        return _upload(call, upstream, req.stream, counted=True), None
    return None, None


def _upload(call: Call, upstream: Upstream, stream, *, counted: bool):
    """The client's body as it arrives, under the call's deadline and the read timeout (a silent
    client's socket is shut by the silence sweep) and the size limit. Raising here leaves the
    provider's request unfinished: urllib3 closes that connection before the body's end.
    `counted`: add up `call.bytes_in` (a chunked body; a declared length is set already)."""
    limit = call.request.max_content_length
    deadline = call.sent + upstream.deadline
    sock = call.environ.get("gunicorn.socket") or call.environ.get("werkzeug.socket")
    watch = upstream.silences.watch(sock, until=deadline) if sock is not None else None
    try:
        while True:
            if watch is not None:
                watch.since = time.monotonic()
            try:
                chunk = stream.read(CHUNK)
            except RequestEntityTooLarge:
                raise ApiError(413, TOO_LARGE.format(limit=limit)) from None
            except Exception:
                if watch is not None and watch.cut:
                    raise ApiError(408, UPLOAD_SLOW) from None
                raise
            if (watch is not None and watch.cut) or time.monotonic() >= deadline:
                log.warning("client upload cut at the deadline or the read timeout")
                raise ApiError(408, UPLOAD_SLOW)
            if watch is not None:
                watch.since = None
            if not chunk:
                return
            if counted:
                call.bytes_in += len(chunk)
            if call.bytes_in > limit:
                raise ApiError(413, TOO_LARGE.format(limit=limit))
            yield chunk
    finally:
        if watch is not None:
            upstream.silences.forget(watch)


def relay(call: Call, upstream: Upstream, concerns: Concerns) -> Response:
    """The provider's answer as the client's: headers filtered, the key scrubbed from error bodies."""
    answer = call.answer
    if concerns.relay:
        call.observers = tuple(observer for hook in concerns.relay if (observer := hook(call)) is not None)
    if answer.status >= 400:
        body = scrub(upstream.error_body(answer, ERROR_BODY_LIMIT), [call.key, call.token])
        call.bytes_out, call.outcome = len(body), "complete"
        for observe in call.observers:
            observe(body)
        response = Response(body, status=answer.status, headers=response_headers(answer.headers, scrubbed=True))
    else:
        response = Response(
            upstream.body(answer, call),
            status=answer.status,
            headers=response_headers(answer.headers, scrubbed=False),
        )
        if is_event_stream(answer.headers.get("Content-Type")):
            call.environ[observability.EVENT_STREAM] = True
            response.headers["X-Accel-Buffering"] = "no"
            response.headers["Cache-Control"] = "no-cache"
    if call.origin:
        response.headers["Access-Control-Allow-Origin"] = call.origin
        response.headers["Vary"] = "Origin"
    response.call_on_close(partial(_closed, call, concerns))
    return response


def _closed(call: Call, concerns: Concerns) -> None:
    """The server closed the relayed body: settle. A body never read (HEAD, 204, or the client
    gone before its first byte) still holds its connection: closed here."""
    if call.outcome is None:
        call.answer.close()
        bodiless = call.method == "HEAD" or call.status in (204, 304) or call.status < 200
        call.outcome = "complete" if bodiless else "gone"
    settle(call, concerns)


def _settle_raised(call: Call, concerns: Concerns, exc: Exception, outcome: str) -> None:
    call.status, call.outcome = status_of(exc), outcome
    settle(call, concerns)


def settle(call: Call, concerns: Concerns) -> None:
    """The call is over: each concern's `settle` runs, one's failure stopping neither the others
    nor the answer."""
    call.ended = time.monotonic()
    for hook in concerns.settle:
        try:
            hook(call)
        except Exception as exc:  # noqa: BLE001 - a concern must not break the call or the others
            log.error("settle of %s failed: %s", type(hook.__self__).__name__, type(exc).__name__)
