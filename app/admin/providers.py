"""Provider keys: encrypted by the project's transit key, never shown again."""

from __future__ import annotations

from flask.views import MethodView
from flask_smorest import Blueprint

from ..services import provider_keys
from .auth import actor
from .context import config, vault
from .pages import LINK, PageArgs, answer
from .schemas import Provider, ProviderDelete, ProviderPut

blp = Blueprint(
    "providers",
    __name__,
    url_prefix="/api/v1/orgs/<slug:org>/projects/<slug:project>/providers",
    description="Provider keys (write-only) and settings.",
)


@blp.route("")
class Providers(MethodView):
    @blp.arguments(PageArgs, location="query")
    @blp.response(200, Provider(many=True), headers=LINK)
    def get(self, args, org, project):
        """List the project's providers, never their keys (a page: see `Link`)."""
        return answer(provider_keys.list_all(vault(), actor(), org, project, **args), args)


@blp.route("/<slug:name>")
class ProviderByName(MethodView):
    @blp.arguments(ProviderPut)
    @blp.response(200, Provider)
    def put(self, data, org, project, name):
        """Store or replace a provider key (a new version; concurrent writers get 409)."""
        return provider_keys.put(vault(), config(), actor(), org, project, name, data)

    @blp.response(200, Provider)
    def get(self, org, project, name):
        """Show a provider (never its key)."""
        return provider_keys.show(vault(), actor(), org, project, name)

    @blp.arguments(ProviderDelete, location="query")
    @blp.response(204)
    def delete(self, args, org, project, name):
        """Remove a provider; its key history is kept until `?purge=true` destroys it."""
        if args["purge"]:
            provider_keys.purge(vault(), actor(), org, project, name)
        else:
            provider_keys.delete(vault(), actor(), org, project, name)
