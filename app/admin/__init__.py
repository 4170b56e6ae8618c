"""The admin REST API (flask-smorest): orgs, members, projects, providers, tokens, audit, usage."""

from __future__ import annotations

from flask import request
from flask_smorest import Api, Blueprint
from werkzeug.routing import BaseConverter, ValidationError

from .. import docs
from ..errors import ApiError
from ..rules.slugs import SLUG_PATTERN, is_slug
from . import audit, identity_providers, members, orgs, policies, projects, providers, rotation, settings, tokens, usage
from .auth import authenticate, record_refusal
from .openapi import make_api
from .schemas import SLUG_DOC

# Unknown query parameters are refused (422 naming them) as unknown body fields are, rather than
# ignored: a misspelt `?cascade=true` or `?limt=` must not pass unnoticed. `None`: each schema's
# own `unknown`, marshmallow's RAISE unless a schema says otherwise.
Blueprint.ARGUMENTS_PARSER.unknown = None

BLUEPRINTS = (
    orgs.blp,
    members.blp,
    projects.blp,
    providers.blp,
    tokens.blp,
    rotation.blp,
    identity_providers.blp,
    audit.blp,
    usage.blp,
    policies.blp,
    settings.blp,
)


def require_json() -> None:
    """before_request hook: a body sent as anything but JSON (a form, or JSON without its
    Content-Type) is a 415 that says so, rather than every required field reported missing.
    A bodiless call (a DELETE, a POST that takes no body) is not concerned."""
    has_body = request.content_length or "chunked" in request.headers.get("Transfer-Encoding", "").lower()
    if has_body and not request.is_json:
        raise ApiError(415, "Send the request body as JSON, with the header Content-Type: application/json.")


for _blp in BLUEPRINTS:  # once, at import, in this order:
    _blp.before_request(audit.bind_trail)  # the request's audit trail first, so refusals are recorded
    _blp.before_request(authenticate)  # a bad admin token is a 401 before any input is read
    _blp.before_request(require_json)
    _blp.after_request(record_refusal)
    _blp.teardown_request(audit.unbind_trail)


class SlugConverter(BaseConverter):
    """URL converter: a path segment that is not a valid slug does not match (404)."""

    regex = SLUG_PATTERN

    def to_python(self, value: str) -> str:
        if not is_slug(value):
            raise ValidationError()
        return value


def init_api(app) -> Api:
    app.config.update(
        API_TITLE="JetPero admin API",
        API_VERSION="v1",
        OPENAPI_VERSION="3.0.3",
        OPENAPI_URL_PREFIX="/api/v1",
        OPENAPI_JSON_PATH="openapi.json",
        OPENAPI_SWAGGER_UI_PATH="docs",
        OPENAPI_SWAGGER_UI_URL=docs.ASSETS_URL,  # Swagger UI from the app itself, never a CDN
        OPENAPI_SWAGGER_UI_CONFIG={"validatorUrl": None},  # no call to validator.swagger.io
        API_SPEC_OPTIONS={
            "components": {
                "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWS"}}
            },
            "security": [{"bearerAuth": []}],
        },
    )
    api = make_api(app)
    docs.init_app(app)
    api.register_converter(SlugConverter, lambda _: {"type": "string", **SLUG_DOC})
    app.url_map.converters["slug"] = SlugConverter
    for blp in BLUEPRINTS:
        api.register_blueprint(blp)
    return api
