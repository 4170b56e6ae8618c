"""`ANY /proxy/<provider>/<path>`: check the project token, inject the key, stream both ways."""

from __future__ import annotations

import errno
import logging
import time

from flask import Blueprint, Response, current_app, request
from urllib3.exceptions import ConnectTimeoutError, HTTPError, NewConnectionError, ReadTimeoutError

from .. import access, observability
from ..errors import ApiError
from ..rules.slugs import is_slug
from ..rules.tokens import InvalidToken
from ..services import projects, provider_keys
from ..state import Worker
from ..vault.errors import NotFound
from . import forward
from .silence import Silences, Watch
from .upstream import BlockedAddress

log = logging.getLogger("jetpero.proxy")

bp = Blueprint("proxy", __name__)

METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]
ERROR_BODY_LIMIT = 1 << 20  # error bodies are read whole (to scrub them) up to this size
CHUNK = 65536
SMALL_BODY = 65536  # request bodies up to this size are read at once; larger ones stream


def _worker() -> Worker:
    return current_app.extensions["jetpero"]


def _ensure_fresh(worker: Worker) -> None:
    """Fail closed when this worker cannot vouch that it has seen every revocation."""
    if not worker.fresh():
        worker.sync_now()  # Unavailable when Vault cannot be reached


def _preflight(origin: str) -> Response:
    """Answered without a token: grants nothing; the real request is checked per project."""
    response = Response(status=204)
    response.headers["Access-Control-Allow-Origin"] = origin
    response.headers["Access-Control-Allow-Methods"] = ", ".join(METHODS)
    requested = request.headers.get("Access-Control-Request-Headers", "")
    if requested:
        response.headers["Access-Control-Allow-Headers"] = requested[:1024]
    response.headers["Access-Control-Max-Age"] = "600"
    response.headers["Vary"] = "Origin"
    return response


def _origin_allowed(worker: Worker, claims: dict, origin: str) -> bool:
    allowed = claims["origins"]
    if allowed is None:
        key = (claims["org"], claims["project"])
        record = worker.projects.lookup(key)
        if record is None:
            record = worker.projects.fill(key, lambda: projects.get(worker.vault, *key))
        allowed = record["allowed_origins"]
    return origin in allowed


def _provider(worker: Worker, claims: dict, name: str) -> tuple[dict, str]:
    scope = claims["providers"]
    if name not in scope and "*" not in scope:
        raise ApiError(403, "This token's scope does not include that provider.")
    key = (claims["org"], claims["project"], name)
    hit = worker.provider_keys.lookup(key)
    if hit is None:
        if not is_slug(name):  # never a Vault path segment unless it is a provider name
            raise ApiError(404, "That provider is not configured for this project.")

        def load():
            try:
                return provider_keys.load_with_key(worker.vault, *key)
            except NotFound:
                raise ApiError(404, "That provider is not configured for this project.") from None

        hit = worker.provider_keys.fill(key, load)
    return hit


def _body(req):
    """The request body as urllib3 should send it: None, bytes (small), a sized stream, or chunks."""
    length = req.content_length
    if length is not None:
        if length <= SMALL_BODY:  # one send with the headers instead of two
            return (req.stream.read(length) if length else None), False
        return req.stream, False
    if req.environ.get("HTTP_TRANSFER_ENCODING", "").lower() == "chunked":
        stream = req.stream
        return iter(lambda: stream.read(CHUNK), b""), True
    return None, False


@bp.route("/proxy/<provider>/", methods=METHODS)
def proxy_root(provider: str):
    """The provider's base URL itself. Its own endpoint rather than `defaults={"path": ""}` on
    the one below: werkzeug would check every match of that one against the defaults."""
    return proxy(provider, "")


@bp.route("/proxy/<provider>/<path:path>", methods=METHODS)
def proxy(provider: str, path: str):
    worker = _worker()
    req = request._get_current_object()  # one context lookup, not one per attribute
    environ = req.environ  # headers read straight from it: cheaper than through req.headers
    origin = environ.get("HTTP_ORIGIN")
    if req.method == "OPTIONS" and origin and environ.get("HTTP_ACCESS_CONTROL_REQUEST_METHOD"):
        return _preflight(origin)
    token = forward.token_from(environ)
    if not token:
        raise InvalidToken("missing")
    _ensure_fresh(worker)
    claims = access.project_token(worker, token)
    entry = environ[observability.ENTRY]  # the request line's fields
    entry["org"], entry["project"], entry["provider"] = claims["org"], claims["project"], provider
    if origin and not _origin_allowed(worker, claims, origin):
        raise ApiError(403, "This origin is not allowed for this project.")
    record, key = _provider(worker, claims, provider)
    try:
        url = forward.upstream_url(record["base_url"], path, req.query_string, drop_param=record.get("auth_name"))
    except forward.BadPath:
        raise ApiError(400, "The path cannot be forwarded.") from None
    headers = forward.request_headers(environ, extra_drop=record.get("auth_name"))
    url = forward.inject(headers, url, record, key)
    body, chunked = _body(req)
    if body is not None and not chunked:
        headers["Content-Length"] = str(req.content_length)
    started = time.monotonic()
    try:
        upstream = worker.http.urlopen(
            req.method,
            url,
            body=body,
            headers=headers,
            chunked=chunked,
            redirect=False,
            retries=False,
            preload_content=False,
            decode_content=False,
            timeout=worker.upstream_timeout,
        )
    except BlockedAddress:
        raise ApiError(502, "The provider's address is not allowed.") from None
    except NewConnectionError:  # a subclass of ConnectTimeoutError, but refused/unresolvable: 502
        raise ApiError(502, "The provider could not be reached.") from None
    except (ConnectTimeoutError, ReadTimeoutError):
        raise ApiError(504, "The provider did not answer in time.") from None
    except (HTTPError, OSError):
        raise ApiError(502, "The provider could not be reached.") from None
    entry["upstream_ms"] = (time.monotonic() - started) * 1000
    if "x-request-id" in upstream.headers:
        environ[observability.UPSTREAM_REQUEST_ID] = True
    config = worker.config
    deadline = started + config.JETPERO_UPSTREAM_DEADLINE
    return _relay(upstream, key, token, origin, deadline, worker.silences, environ)


class AnswerCut(ConnectionResetError):
    """Raised from a relayed body cut short (deadline, silence, provider failure): the server then
    drops the connection instead of ending the body, and the client's SDK reports an incomplete
    answer rather than taking the part it got for all of it. An ECONNRESET: gunicorn (and
    werkzeug's server) drop the connection quietly, with no traceback in the log."""

    def __init__(self) -> None:
        super().__init__(errno.ECONNRESET, "the provider's answer was cut short")


def _limit_silence(upstream, seconds: float) -> None:
    """The next read waits at most `seconds` (no socket once the whole body has been read)."""
    sock = getattr(upstream.connection, "sock", None)
    if sock is not None:
        sock.settimeout(seconds)


def _watch(upstream, silences: Silences) -> Watch | None:
    sock = getattr(upstream.connection, "sock", None)
    if sock is None:
        return None
    sock.settimeout(None)  # the sweep times the waits now
    return silences.watch(sock)


def _relay(
    upstream, key: str, token: str, origin: str | None, deadline: float, silences: Silences, environ: dict
) -> Response:
    if upstream.status >= 400:
        try:
            body = upstream.read(ERROR_BODY_LIMIT, decode_content=True)
        except ReadTimeoutError:
            upstream.close()
            raise ApiError(504, "The provider did not answer in time.") from None
        except (HTTPError, OSError):  # cut short or undecodable
            upstream.close()
            raise ApiError(502, "The provider could not be reached.") from None
        upstream.release_conn()
        response = Response(
            forward.scrub(body, [key, token]),
            status=upstream.status,
            headers=forward.response_headers(upstream.headers, scrubbed=True),
        )
    else:

        def stream():
            # The first read waits under the socket's read timeout. Most answers end with it (a sized
            # body read whole: the next read returns b"" without waiting); past it, the sweep of
            # `silences` times the waits, and the socket only when the deadline is nearer than the
            # read timeout.
            complete, watch = False, None
            try:
                while (left := deadline - (now := time.monotonic())) > 0:
                    if left < silences.limit:
                        _limit_silence(upstream, left)
                    elif watch is not None:
                        watch.since = now
                    chunk = upstream.read1(CHUNK)
                    if not chunk:
                        complete = True
                        break
                    if watch is not None:
                        watch.since = None
                    elif upstream.length_remaining != 0:  # 0: the next read ends it without waiting
                        watch = _watch(upstream, silences)
                    yield chunk
                else:
                    log.warning("upstream answer cut at the deadline")
            except (HTTPError, OSError):
                if watch is None or not watch.cut:  # a cut is logged by the sweep
                    log.warning("upstream stream ended early")
            finally:
                if watch is not None and silences.forget(watch):
                    complete = False
                if complete:
                    upstream.release_conn()
                else:
                    upstream.close()  # client went away, deadline, or upstream failure
            if not complete:  # not reached when the client went away (the generator was closed)
                raise AnswerCut

        response = Response(
            stream(), status=upstream.status, headers=forward.response_headers(upstream.headers, scrubbed=False)
        )
        if forward.is_event_stream(upstream.headers.get("Content-Type")):
            environ[observability.EVENT_STREAM] = True
            response.headers["X-Accel-Buffering"] = "no"
            response.headers["Cache-Control"] = "no-cache"
    if origin:
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Vary"] = "Origin"
    return response
