"""Provider keys: encrypted by the project's transit key, never shown again."""

from __future__ import annotations

from flask.views import MethodView
from flask_smorest import Blueprint

from ..errors import ApiError
from ..providers import TEMPLATES, hint
from ..vault import provider_keys
from . import auth
from .context import vault, worker
from .schemas import Provider, ProviderPut, base_url_error

blp = Blueprint(
    "providers",
    __name__,
    url_prefix="/api/v1/orgs/<slug:org>/projects/<slug:project>/providers",
    description="Provider keys (write-only) and settings.",
)


def settings(data: dict) -> dict:
    """The non-secret settings stored beside the ciphertext."""
    template = TEMPLATES[data["template"]]
    base_url = (data.get("base_url") or template.base_url or "").rstrip("/")
    error = base_url_error(base_url, allow_private=worker().config.JETPERO_ALLOW_PRIVATE_UPSTREAMS)
    if error:
        raise ApiError(422, f"base_url {error}.")
    return {
        "template": template.name,
        "base_url": base_url,
        "auth_type": data.get("auth_type", template.auth_type),
        "auth_name": data.get("auth_name", template.auth_name),
        "key_hint": hint(data["api_key"]),
    }


@blp.route("")
class Providers(MethodView):
    @blp.response(200, Provider(many=True))
    def get(self, org, project):
        """List the project's providers (never their keys)."""
        auth.require("viewer", org)
        return provider_keys.list_all(vault(), org, project)


@blp.route("/<slug:name>")
class ProviderByName(MethodView):
    @blp.arguments(ProviderPut)
    @blp.response(200, Provider)
    def put(self, data, org, project, name):
        """Store or replace a provider key (a new version; concurrent writers get 409)."""
        auth.require("admin", org)
        return provider_keys.put(vault(), org, project, name, api_key=data["api_key"], settings=settings(data))

    @blp.response(200, Provider)
    def get(self, org, project, name):
        """Show a provider (never its key)."""
        auth.require("viewer", org)
        return provider_keys.get(vault(), org, project, name)

    @blp.response(204)
    def delete(self, org, project, name):
        """Remove a provider and its key history."""
        auth.require("admin", org)
        provider_keys.delete(vault(), org, project, name)
