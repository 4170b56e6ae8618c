"""gunicorn settings: gevent workers (streams need them), no preload, no access log.

JetPero writes its own JSON line per request (without query strings); gunicorn's access
log would record raw request lines, where a Gemini-style `?key=` could appear.
"""

import os
import shutil
import tempfile

from config import Config, ConfigError

try:
    _config = Config.from_env()
except ConfigError as exc:
    raise SystemExit(f"jetpero: configuration error: {exc}") from None

bind = _config.JETPERO_BIND
workers = _config.JETPERO_WORKERS
worker_class = "gevent"
worker_connections = 4000
preload_app = False  # connections opened before the fork would be shared between workers
accesslog = None
errorlog = "-"
loglevel = "warning"
timeout = 30
graceful_timeout = 10
keepalive = 75
limit_request_line = 8190

# Prometheus multiprocess mode: every worker writes its metrics to memory-mapped files in one
# directory, which /metrics on any worker aggregates. A fresh directory per master start, in
# memory (/dev/shm) where there is one: on a disk every update would dirty a page to write back.
# A directory made here is removed when the master exits (one set by the operator is theirs).
_made_metrics_dir = None
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    _shm = "/dev/shm"  # noqa: S108 - a private mkdtemp directory inside it
    _made_metrics_dir = os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(
        prefix="jetpero-metrics-", dir=_shm if os.path.isdir(_shm) else None
    )


def child_exit(server, worker):
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server):
    if _made_metrics_dir:
        shutil.rmtree(_made_metrics_dir, ignore_errors=True)


def post_worker_init(worker):
    # What the worker has loaded by now (the app and its libraries, ~60,000 objects) lives as long
    # as the worker: frozen, the cyclic GC's full collections no longer walk it (~35 ms each).
    import gc

    gc.freeze()
    # The change-feed poller of this worker: after the fork (a thread does not survive one), before
    # the first request. Under any other server the app starts it at its first request.
    worker.wsgi.extensions["jetpero"].start()
