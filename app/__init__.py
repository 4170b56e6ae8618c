"""JetPero: provider keys in Vault, project tokens, and a key-injecting proxy."""

from __future__ import annotations

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from config import Config

from . import cli, errors, health, json_guard, observability
from .admin import BLUEPRINTS, init_api
from .exchange import EXTENSION as EXCHANGE
from .exchange import Exchanger
from .exchange import bp as exchange_bp
from .proxy.call import concerns_for
from .proxy.upstream import Upstream
from .proxy.views import CONCERNS, UPSTREAM
from .proxy.views import bp as proxy_bp
from .services.pruning import PruningJob
from .services.rotation_job import RotationJob
from .services.usage import RetentionJob, UsageWriter
from .state import Worker
from .store import db, migrate
from .vault.connection import Vault


def create_app(config: Config | None = None) -> Flask:
    """The one wiring point: config, per-worker state, blueprints, error handlers, CLI."""
    config = config or Config.from_env()
    app = Flask(__name__, static_folder=None)
    app.config.update(DEBUG=False, PROPAGATE_EXCEPTIONS=False, MAX_FORM_MEMORY_SIZE=0)
    vault = Vault(
        addr=config.VAULT_ADDR,
        approle_file=config.VAULT_APPROLE_FILE,
        timeout=config.VAULT_TIMEOUT,
        cacert=config.VAULT_CACERT,
    )
    worker = Worker(vault=vault, config=config)
    app.extensions["jetpero"] = worker
    upstream = app.extensions[UPSTREAM] = Upstream(config)
    app.extensions[EXCHANGE] = Exchanger(config)
    worker.on_stop.append(upstream.stop)

    vault.observer = observability.vault_observer
    worker.on_tick.append(lambda: worker.report_caches(observability.cache_counts))
    worker.on_tick.append(observability.flush_metrics)
    worker.on_tick.append(observability.configure_logging(config.JETPERO_LOG_LEVEL).drain)
    migrate.upgrade(config.JETPERO_DATABASE_URL)
    app.extensions["jetpero.db"] = engine = db.engine_for(config.JETPERO_DATABASE_URL)
    app.extensions["jetpero.usage"] = usage = UsageWriter(engine, bound=config.JETPERO_USAGE_QUEUE)
    worker.on_tick.append(RetentionJob(engine))
    worker.on_tick.append(RotationJob(engine, vault, config, observability.provider_key_ages))
    worker.on_tick.append(PruningJob(vault, engine, config.JETPERO_TOKEN_RECORD_RETENTION_DAYS))
    worker.on_start.append(usage.start)  # the usage writer starts after the fork, with the poller
    worker.on_stop.append(usage.stop)
    observability.watch_usage(usage)  # its drops in jetpero_usage_dropped_total
    app.extensions[CONCERNS] = concerns_for(config, usage)
    observability.init_app(app)
    _start_on_first_request(app, worker)
    if proxies := config.JETPERO_TRUSTED_PROXIES:  # outermost: the request line logs the derived client IP
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=proxies, x_proto=proxies, x_host=proxies)
    init_api(app)
    json_guard.init_app(app, BLUEPRINTS)  # after the blueprints' own hooks (authentication)
    errors.register(app)  # after flask-smorest, whose own HTTPException handler it replaces
    app.register_blueprint(proxy_bp)
    app.register_blueprint(exchange_bp)
    app.register_blueprint(health.bp)
    cli.register(app)
    return app


def _start_on_first_request(app: Flask, worker: Worker) -> None:
    """The change-feed poller starts after the fork: gunicorn's `post_worker_init` starts it
    (gunicorn.conf.py); any other server (werkzeug, a test client) starts it at its first
    request, through a hook that then removes itself."""

    def start() -> None:
        worker.start()
        # A new list: Flask is iterating the current one.
        app.before_request_funcs[None] = [hook for hook in app.before_request_funcs[None] if hook is not start]

    app.before_request(start)
