"""JSON logs (one line per request) and Prometheus metrics.

The request line names the route template (`/proxy/<provider>/<path:path>`), never the raw
path or query string, so a key or token put in a URL by a client cannot reach the logs.
Metrics use prometheus_client; under gunicorn they aggregate across workers through its
multiprocess mode (`PROMETHEUS_MULTIPROC_DIR`, set by gunicorn.conf.py).

Both run once per proxied request, so both stay off the request's path as far as they can:
the request line is formatted straight to the log stream (no LogRecord, no handler chain), and
request metrics are tallied in plain numbers per worker and added to prometheus_client once per
poll (every JETPERO_SYNC_INTERVAL), at each scrape of this worker, and at exit.
"""

from __future__ import annotations

import atexit
import hmac
import json
import logging
import os
import sys
import threading
import time
from bisect import bisect_left

from flask import Flask, Response, abort, current_app, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

log = logging.getLogger("jetpero.request")

REQUESTS = Counter("jetpero_requests_total", "Requests answered.", ["surface", "provider", "status"])
PROXY_SECONDS = Histogram("jetpero_proxy_duration_seconds", "Whole proxied calls, to the last byte.", ["provider"])
UPSTREAM_SECONDS = Histogram(
    "jetpero_upstream_duration_seconds", "Time until the provider's response headers.", ["provider"]
)
VAULT_SECONDS = Histogram("jetpero_vault_call_duration_seconds", "Vault calls.", ["identity"])
VAULT_ERRORS = Counter("jetpero_vault_errors_total", "Vault calls that failed.", ["identity", "error"])
CACHE = Counter("jetpero_cache_lookups_total", "Per-worker cache lookups.", ["cache", "result"])
ACTIVE_STREAMS = Gauge("jetpero_active_streams", "Proxied responses being relayed.", multiprocess_mode="livesum")


_second: tuple[int, str] = (-1, "")  # (a whole second, its UTC time formatted)


def _utc(created: float) -> str:
    """`2026-11-26T23:00:00.123Z`; the part up to the second is formatted once a second."""
    global _second
    whole = int(created)
    if whole != _second[0]:
        _second = (whole, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)))
    return f"{_second[1]}.{int((created - whole) * 1000):03d}Z"


_encode = json.JSONEncoder(default=str).encode


class JsonLines(logging.Formatter):
    """One JSON object per line: time, level, logger, message, plus `extra={"fields": {...}}`.

    A few lines of json rather than a formatter library: measured 8 µs a line against
    python-json-logger's 62 µs on this machine. Exception text and tracebacks are never
    written (they may quote paths or values).
    """

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": _utc(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if fields:
            entry.update(fields)
        return _encode(entry)


class BufferedStderr(logging.StreamHandler):
    """stderr through a 64 KiB buffer: request lines cost no write(2) each.

    The buffer is flushed by `drain()` (the worker's poller calls it every sync interval),
    at once for WARNING and above, when it fills, and at exit.
    """

    def __init__(self) -> None:
        super().__init__(open(sys.stderr.fileno(), "w", buffering=1 << 16, encoding="utf-8", closefd=False))
        atexit.register(self.drain)

    def flush(self) -> None:  # StreamHandler.emit flushes after every record: not here
        pass

    def emit(self, record: logging.LogRecord) -> None:
        super().emit(record)
        if record.levelno >= logging.WARNING:
            self.drain()

    def write_line(self, line: str) -> None:
        """A line formatted by the caller (the request line): no LogRecord, filters or formatter."""
        with self.lock:
            try:
                self.stream.write(line + "\n")
            except (OSError, ValueError):  # as logging does: a log that cannot be written is not an error
                pass

    def drain(self) -> None:
        with self.lock:
            try:
                self.stream.flush()
            except (OSError, ValueError):
                pass


_stream: BufferedStderr | None = None  # where request lines go; set by configure_logging


def configure_logging(level: str) -> BufferedStderr:
    # The logging HOWTO's "Optimization" switches: no caller lookup, thread or process fields.
    logging._srcfile = None
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    handler = BufferedStderr()
    handler.setFormatter(JsonLines())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    global _stream
    _stream = handler
    return handler


def request_line(entry: dict) -> None:
    """The per-request line (`Observed` makes `entry` with the keys of a JsonLines line first)."""
    if not log.isEnabledFor(logging.INFO):
        return
    if _stream is None:  # logging not configured by JetPero (a library user): the standard path
        fields = {k: v for k, v in entry.items() if k not in ("time", "level", "logger", "message")}
        log.info("request", extra={"fields": fields})
        return
    entry["time"] = _utc(time.time())
    _stream.write_line(_encode(entry))


def vault_observer(identity: str, seconds: float, error: str | None) -> None:
    _child(VAULT_SECONDS, identity).observe(seconds)
    if error:
        _child(VAULT_ERRORS, identity, error).inc()


def cache_counts(cache: str, hits: int, misses: int) -> None:
    """Cache lookups are counted in plain ints per worker and added here once per poll."""
    if hits:
        _child(CACHE, cache, "hit").inc(hits)
    if misses:
        _child(CACHE, cache, "miss").inc(misses)


class _Tally:
    """Request metrics in plain numbers, added to prometheus_client by `flush()`.

    In multiprocess mode each prometheus_client update takes a lock, checks the pid and writes
    a memory-mapped file: the five per proxied request cost more than the rest of the metrics
    work. Here a request takes one lock and adds to a dict. A histogram is tallied as its
    bucket counts and sum, and added to the prometheus_client child's own bucket and sum values
    (prometheus_client has no public call to add many observations at once; the tests check
    what /metrics then says).
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.requests: dict[tuple[str, str, str], int] = {}  # (surface, provider, status) -> count
        self.durations: dict[tuple, list] = {}  # (histogram, provider) -> [per-bucket counts..., sum]

    def _observe(self, histogram, provider: str, seconds: float) -> None:
        key = (histogram, provider)
        tally = self.durations.get(key)
        if tally is None:
            tally = self.durations[key] = [0] * (len(histogram._upper_bounds) + 1)
        tally[bisect_left(histogram._upper_bounds, seconds)] += 1  # buckets are `le`: first bound >= value
        tally[-1] += seconds

    def request(self, surface: str, provider: str, status: str, seconds: float, upstream: float | None) -> None:
        """One answered request; for a proxied one also its duration and the provider's."""
        key = (surface, provider, status)
        with self.lock:
            self.requests[key] = self.requests.get(key, 0) + 1
            if upstream is not None:
                self._observe(PROXY_SECONDS, provider, seconds)
                self._observe(UPSTREAM_SECONDS, provider, upstream)

    def flush(self) -> None:
        with self.lock:
            requests, self.requests = self.requests, {}
            durations, self.durations = self.durations, {}
        for labels, n in requests.items():
            _child(REQUESTS, *labels).inc(n)
        for (histogram, provider), tally in durations.items():
            child = _child(histogram, provider)
            for bucket, n in zip(child._buckets, tally, strict=False):
                if n:
                    bucket.inc(n)
            child._sum.inc(tally[-1])


_tally = _Tally()
atexit.register(_tally.flush)
flush_metrics = _tally.flush

_children: dict[tuple, object] = {}


def _child(metric, *labels: str):
    """`metric.labels(*labels)`, remembered: the lookup costs more than the increment."""
    key = (metric, labels)
    child = _children.get(key)
    if child is None:
        child = _children[key] = metric.labels(*labels)
    return child


def _surface(path: str) -> str:
    if path.startswith("/proxy/"):
        return "proxy"
    if path.startswith("/api/"):
        return "admin"
    return "ops"


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
            "logger": log.name,
            "message": "request",
            "request_id": os.urandom(16).hex(),  # not a counter: ids would reveal traffic volume
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
                ACTIVE_STREAMS.inc()
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


def _finish(environ: dict, seconds: float) -> None:
    entry = environ[ENTRY]
    if environ.get(EVENT_STREAM) and entry["status"] is not None:
        ACTIVE_STREAMS.dec()
    provider, upstream_ms = entry["provider"], entry["upstream_ms"]
    surface = _surface(entry["route"] or environ.get("PATH_INFO", ""))
    proxied = surface == "proxy" and provider and upstream_ms is not None
    _tally.request(surface, provider or "", str(entry["status"]), seconds, upstream_ms / 1000 if proxied else None)
    if upstream_ms is not None:
        entry["upstream_ms"] = _hundredths(upstream_ms)
    entry["duration_ms"] = _hundredths(seconds * 1000)
    request_line(entry)


def _hundredths(value: float) -> float:
    """`round(value, 2)` for the non-negative durations logged, without its decimal conversion."""
    return int(value * 100 + 0.5) / 100


def metrics() -> Response:
    """Prometheus text format; off (404) unless JETPERO_METRICS_TOKEN is set and presented."""
    expected = current_app.extensions["jetpero"].config.JETPERO_METRICS_TOKEN
    presented = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
    if not expected:
        abort(404)
    if not hmac.compare_digest(presented.encode(), expected.encode()):
        abort(401)
    _tally.flush()  # this worker's own figures are current
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    else:
        registry = REGISTRY
    return Response(generate_latest(registry), mimetype=CONTENT_TYPE_LATEST)


def init_app(app: Flask, *, on_request) -> None:
    """`Observed` around the app, and one hook before each request (route, `on_request()`)."""
    app.wsgi_app = Observed(app.wsgi_app)

    @app.before_request
    def _start() -> None:
        req = request._get_current_object()
        rule = req.url_rule
        if rule is not None:
            entry = req.environ[ENTRY]
            entry["route"] = rule.rule
            if req.view_args and "org" in req.view_args:  # admin routes name them in the path
                entry["org"], entry["project"] = req.view_args["org"], req.view_args.get("project")
        on_request()

    app.add_url_rule("/metrics", "metrics", metrics)
