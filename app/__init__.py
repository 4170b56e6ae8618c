"""JetPero: provider keys in Vault, project tokens, and a key-injecting proxy."""

from __future__ import annotations

import uuid

from flask import Flask, g

from config import Config

from . import cli, errors, health
from .admin import init_api
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

    @app.before_request
    def _request_id() -> None:
        g.request_id = uuid.uuid4().hex
        worker.start()  # the change-feed poller, once per worker, after the fork

    @app.after_request
    def _stamp(response):
        response.headers["X-Request-Id"] = g.get("request_id", "")
        return response

    errors.register(app)
    init_api(app)
    app.register_blueprint(proxy_bp)
    app.register_blueprint(health.bp)
    cli.register(app)
    return app
