"""The request middleware: an id per request, then one request line and its metrics.

Request fields are gathered in a dict in the WSGI environ (`ENTRY`) as the request goes: the
route and the org and project by the before-request hook, the provider and upstream time by
the proxy. The id is random, not a counter (ids would reveal traffic volume).
"""

from __future__ import annotations

import os
import time

from flask import Flask, request

from . import logs, metrics

ENTRY = "jetpero.request"  # environ key: this request's log entry, filled in as it goes
EVENT_STREAM = "jetpero.event_stream"  # environ key: the response is an SSE stream
UPSTREAM_REQUEST_ID = "jetpero.upstream_request_id"  # environ key: the response has the provider's own id


def request_id() -> str | None:
    """The current request's id (None outside a request served through `Observed`)."""
    entry = request.environ.get(ENTRY)
    return entry["request_id"] if entry else None


class Observed:
    """WSGI middleware around the Flask app: each request gets an id (returned as X-Request-Id)
    and, once the server closes the response (last byte sent, or the client gone), one request
    line and its metrics.

    A middleware rather than an `after_request` hook: it adds the header to the header list as
    it is sent, and its close runs after Flask's own, without a hook call per request.
    """

    def __init__(self, app) -> None:
        self.app = app

    def __call__(self, environ: dict, start_response):
        started = time.perf_counter()
        entry = environ[ENTRY] = {
            "time": None,  # set with duration_ms when the response is closed
            "level": "INFO",
            "logger": logs.log.name,
            "message": "request",
            "request_id": os.urandom(16).hex(),
            "method": environ.get("REQUEST_METHOD"),
            "client_ip": environ.get("REMOTE_ADDR"),  # the socket's, or ProxyFix's from trusted proxies
            "route": None,  # the rest are filled in by the before-request hook and the proxy
            "org": None,
            "project": None,
            "provider": None,
            "status": None,
            "upstream_ms": None,
            "duration_ms": None,
        }

        def start(status: str, headers: list, exc_info=None):
            entry["status"] = int(status[:3])
            # A provider's own id (OpenAI's x-request-id) is passed through: its SDK reports it.
            if not environ.get(UPSTREAM_REQUEST_ID):
                headers.append(("X-Request-Id", entry["request_id"]))
            if environ.get(EVENT_STREAM):
                metrics.ACTIVE_STREAMS.inc()
            return start_response(status, headers, exc_info)

        return _Closing(self.app(environ, start), environ, started)


class _Closing:
    """The app's response iterable, whose close() also finishes the request's observation.
    Iterating it is iterating the app's own: no Python call added per chunk."""

    __slots__ = ("body", "environ", "started")

    def __init__(self, body, environ: dict, started: float) -> None:
        self.body, self.environ, self.started = body, environ, started

    def __iter__(self):
        return iter(self.body)

    def close(self) -> None:
        try:
            close = getattr(self.body, "close", None)
            if close is not None:
                close()
        finally:
            _finish(self.environ, time.perf_counter() - self.started)


def _surface(path: str) -> str:
    if path.startswith("/proxy/"):
        return "proxy"
    if path.startswith("/api/"):
        return "admin"
    return "ops"


def _finish(environ: dict, seconds: float) -> None:
    entry = environ[ENTRY]
    if environ.get(EVENT_STREAM) and entry["status"] is not None:
        metrics.ACTIVE_STREAMS.dec()
    provider, upstream_ms = entry["provider"], entry["upstream_ms"]
    surface = _surface(entry["route"] or environ.get("PATH_INFO", ""))
    proxied = surface == "proxy" and provider and upstream_ms is not None
    metrics.record_request(
        surface, provider or "", str(entry["status"]), seconds, upstream_ms / 1000 if proxied else None
    )
    if upstream_ms is not None:
        entry["upstream_ms"] = _hundredths(upstream_ms)
    entry["duration_ms"] = _hundredths(seconds * 1000)
    logs.request_line(entry)


def _hundredths(value: float) -> float:
    """`round(value, 2)` for the non-negative durations logged, without its decimal conversion."""
    return int(value * 100 + 0.5) / 100


def init_app(app: Flask) -> None:
    """`Observed` around the app, one hook before each request (its route, org and project), /metrics."""
    app.wsgi_app = Observed(app.wsgi_app)

    @app.before_request
    def _route() -> None:
        req = request._get_current_object()
        rule = req.url_rule
        if rule is not None:
            entry = req.environ[ENTRY]
            entry["route"] = rule.rule
            if req.view_args and "org" in req.view_args:  # admin routes name them in the path
                entry["org"], entry["project"] = req.view_args["org"], req.view_args.get("project")

    app.add_url_rule("/metrics", "metrics", metrics.view)
