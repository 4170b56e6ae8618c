"""JetPero: provider keys in Vault, project tokens, and a key-injecting proxy."""

from __future__ import annotations

from flask import Flask

from config import Config

from . import cli, errors, health, observability
from .admin import init_api
from .proxy.call import concerns_for
from .proxy.upstream import Upstream
from .proxy.views import CONCERNS, UPSTREAM
from .proxy.views import bp as proxy_bp
from .state import Worker
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
    app.extensions[CONCERNS] = concerns_for(config)
    worker.on_stop.append(upstream.stop)

    vault.observer = observability.vault_observer
    worker.on_tick.append(lambda: worker.report_caches(observability.cache_counts))
    worker.on_tick.append(observability.flush_metrics)
    worker.on_tick.append(observability.configure_logging(config.JETPERO_LOG_LEVEL).drain)
    observability.init_app(app, on_request=worker.start)  # the change-feed poller starts after the fork
    init_api(app)
    errors.register(app)  # after flask-smorest, whose own HTTPException handler it replaces
    app.register_blueprint(proxy_bp)
    app.register_blueprint(health.bp)
    cli.register(app)
    return app
