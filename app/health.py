"""`/healthz` (the process answers) and `/readyz` (Vault answers, unsealed, transit works)."""

from __future__ import annotations

import time

from flask import Blueprint, current_app, jsonify

from .services import signing
from .vault.errors import VaultError

bp = Blueprint("health", __name__)

_READY_CACHE_SECONDS = 1.0


@bp.get("/healthz")
def healthz():
    return jsonify(status="ok")


@bp.get("/readyz")
def readyz():
    worker = current_app.extensions["jetpero"]
    cached = worker.readiness
    if cached is None or time.monotonic() - cached[0] > _READY_CACHE_SECONDS:
        cached = (time.monotonic(), _check(worker))
        worker.readiness = cached
    body = cached[1]
    response = jsonify(body)
    if body["status"] != "ready":
        response.status_code = 503
        response.headers["Retry-After"] = "5"
    return response


def _check(worker) -> dict:
    checks = {"vault": "unreachable", "transit": "not checked", "change_feed": "fresh" if worker.fresh() else "stale"}
    try:
        health = worker.vault.health()
        checks["vault"] = (
            "sealed" if health.get("sealed") else "unsealed" if health.get("initialized") else "uninitialised"
        )
        if checks["vault"] == "unsealed":
            signing.probe(worker.vault)
            checks["transit"] = "ok"
    except VaultError:
        checks["transit"] = "failed" if checks["vault"] == "unsealed" else checks["transit"]
    ready = checks["vault"] == "unsealed" and checks["transit"] == "ok"
    return {"status": "ready" if ready else "unavailable", "checks": checks}
