"""Prometheus metrics, tallied per worker and added to prometheus_client once per poll.

Metrics use prometheus_client; under gunicorn they aggregate across workers through its
multiprocess mode (`PROMETHEUS_MULTIPROC_DIR`, set by gunicorn.conf.py). Request metrics run
once per proxied request, so they are tallied in plain numbers per worker and added to
prometheus_client once per poll (every JETPERO_SYNC_INTERVAL), at each scrape of this worker,
and at exit.
"""

from __future__ import annotations

import atexit
import hmac
import os
import threading
import time
from bisect import bisect_left

from flask import Response, abort, current_app, request
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

REQUESTS = Counter("jetpero_requests_total", "Requests answered.", ["surface", "provider", "status"])
PROXY_SECONDS = Histogram("jetpero_proxy_duration_seconds", "Whole proxied calls, to the last byte.", ["provider"])
UPSTREAM_SECONDS = Histogram(
    "jetpero_upstream_duration_seconds", "Time until the provider's response headers.", ["provider"]
)
VAULT_SECONDS = Histogram("jetpero_vault_call_duration_seconds", "Vault calls.", ["identity"])
VAULT_ERRORS = Counter("jetpero_vault_errors_total", "Vault calls that failed.", ["identity", "error"])
CACHE = Counter("jetpero_cache_lookups_total", "Per-worker cache lookups.", ["cache", "result"])
ACTIVE_STREAMS = Gauge("jetpero_active_streams", "Proxied responses being relayed.", multiprocess_mode="livesum")
USAGE_DROPPED = Counter("jetpero_usage_dropped", "Usage records lost: the worker's queue was full, or refused.")
REFUSALS_UNRECORDED = Counter(
    "jetpero_audit_refusals_unrecorded", "Refused admin calls past the per-IP audit budget: counted, not recorded."
)

KEY_AGE = Gauge(
    "jetpero_provider_key_age_seconds",
    "Seconds since each provider key was set (from the rotation job's last read).",
    ["org", "project", "provider"],
    multiprocess_mode="mostrecent",
)

_children: dict[tuple, object] = {}


def provider_key_ages(ages: dict[tuple[str, str, str], float]) -> None:
    """Set the key-age gauge from {(org, project, provider): when set}; drop providers now gone."""
    stamp = time.time()
    for labels in set(_key_age_labels) - set(ages):
        KEY_AGE.remove(*labels)
    for labels, since in ages.items():
        KEY_AGE.labels(*labels).set(stamp - since)
    _key_age_labels.clear()
    _key_age_labels.update(ages)


_key_age_labels: set[tuple[str, str, str]] = set()


def _child(metric, *labels: str):
    """`metric.labels(*labels)`, remembered: the lookup costs more than the increment."""
    key = (metric, labels)
    child = _children.get(key)
    if child is None:
        child = _children[key] = metric.labels(*labels)
    return child


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


def audit_refusal_unrecorded() -> None:
    REFUSALS_UNRECORDED.inc()


class _UsageDropped:
    """The usage writers' `dropped` counts, added to the counter at each flush."""

    def __init__(self) -> None:
        self.writers: list = []
        self.seen: dict[int, int] = {}

    def __call__(self) -> None:
        for writer in self.writers:
            dropped, seen = writer.dropped, self.seen.get(id(writer), 0)
            if dropped > seen:
                USAGE_DROPPED.inc(dropped - seen)
                self.seen[id(writer)] = dropped


_usage_dropped = _UsageDropped()
watch_usage = _usage_dropped.writers.append  # `watch_usage(writer)`: publish its drops


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


def flush_metrics() -> None:
    """Add what this worker tallied to prometheus_client (each poll, each scrape, at exit)."""
    _tally.flush()
    _usage_dropped()


atexit.register(flush_metrics)
record_request = _tally.request


def view() -> Response:
    """Prometheus text format; off (404) unless JETPERO_METRICS_TOKEN is set and presented."""
    expected = current_app.extensions["jetpero"].config.JETPERO_METRICS_TOKEN
    presented = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
    if not expected:
        abort(404)
    if not hmac.compare_digest(presented.encode(), expected.encode()):
        abort(401)
    flush_metrics()  # this worker's own figures are current
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    else:
        registry = REGISTRY
    return Response(generate_latest(registry), mimetype=CONTENT_TYPE_LATEST)
