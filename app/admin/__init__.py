"""The admin REST API (flask-smorest): orgs, members, projects, providers, tokens, audit, usage."""

from __future__ import annotations

from flask_smorest import Api
from werkzeug.routing import BaseConverter, ValidationError

from .. import docs
from ..rules.slugs import SLUG_PATTERN, is_slug
from . import audit, members, orgs, projects, providers, settings, tokens, usage
from .auth import authenticate, record_refusal

BLUEPRINTS = (orgs.blp, members.blp, projects.blp, providers.blp, tokens.blp, audit.blp, usage.blp, settings.blp)
for _blp in BLUEPRINTS:  # once, at import:
    _blp.before_request(audit.bind_trail)  # the request's audit trail first, so refusals are recorded
    _blp.before_request(authenticate)  # a bad admin token is a 401 before any input is read
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
    api = Api(app)
    docs.init_app(app)
    api.register_converter(SlugConverter, lambda _: {"type": "string", "pattern": f"^{SLUG_PATTERN}$"})
    app.url_map.converters["slug"] = SlugConverter
    for blp in BLUEPRINTS:
        api.register_blueprint(blp)
    return api
