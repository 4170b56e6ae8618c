"""The API docs page, served whole by the app: no CDN, and a Content-Security-Policy of its own.

Swagger UI's files come from the pinned `flask-swagger-ui` package (its `dist/` directory, served
at `/api/v1/docs/ui/`); flask-smorest renders the page (`OPENAPI_SWAGGER_UI_URL` points at that
route) with `templates/swagger_ui.html`, which overrides flask-smorest's own so that the page holds
no inline script: Swagger UI is started by `swagger-init.js`, served here too. The page and its
assets may then load from the app itself only.
"""

from __future__ import annotations

from pathlib import Path

import flask_swagger_ui
from flask import Blueprint, Flask, Response, request, send_from_directory

HERE = Path(__file__).parent
SWAGGER_UI_DIST = Path(flask_swagger_ui.__file__).parent / "dist"
ASSETS_URL = "/api/v1/docs/ui/"
DOCS_BLUEPRINTS = ("api-docs", "docs")  # flask-smorest's (the page, the spec) and this one (assets)

# Swagger UI's CSS draws its icons as data: SVGs; everything else comes from the app itself.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)

bp = Blueprint("docs", __name__, url_prefix="/api/v1/docs")


@bp.get("/ui/<path:filename>")
def asset(filename: str) -> Response:
    return send_from_directory(SWAGGER_UI_DIST, filename)


@bp.get("/swagger-init.js")
def initializer() -> Response:
    return send_from_directory(HERE, "swagger-init.js", mimetype="text/javascript")


@bp.after_app_request
def _secure_docs(response: Response) -> Response:
    if request.blueprint in DOCS_BLUEPRINTS:
        response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
    return response


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
