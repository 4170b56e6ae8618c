"""JSON logs (one line per request), Prometheus metrics, and the request middleware joining them.

- `logs`: the JSON line format and the buffered stderr handler the request lines go to.
- `metrics`: the Prometheus metrics, tallied per worker and flushed once per poll, and /metrics.
- `middleware`: `Observed` (request id, one request line and its metrics per request) and
  `init_app`, which wires it and /metrics into the app.

Both the request line and the request metrics run once per proxied request, so both stay off the
request's path as far as they can (see each module).
"""

from .logs import configure_logging
from .metrics import cache_counts, flush_metrics, provider_key_ages, vault_observer, watch_usage
from .middleware import ENTRY, EVENT_STREAM, UPSTREAM_REQUEST_ID, init_app, request_id

__all__ = [
    "ENTRY",
    "EVENT_STREAM",
    "UPSTREAM_REQUEST_ID",
    "cache_counts",
    "configure_logging",
    "flush_metrics",
    "provider_key_ages",
    "init_app",
    "request_id",
    "vault_observer",
    "watch_usage",
]
