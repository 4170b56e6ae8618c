"""Identity providers a project trusts, for end-user tokens minted by `POST /exchange/...`."""

from __future__ import annotations

from flask.views import MethodView
from flask_smorest import Blueprint
from marshmallow import Schema, fields, validate

from ..rules.idp_tokens import ALGORITHMS
from ..rules.tokens import ENVIRONMENTS
from ..services import identity_providers
from .auth import actor
from .context import config, vault
from .schemas import _slug

blp = Blueprint(
    "identity_providers",
    __name__,
    url_prefix="/api/v1/orgs/<slug:org>/projects/<slug:project>/identity-providers",
    description="Trusted identity providers and the end-user policy of the tokens exchanged for their JWTs.",
)

_TEXT = validate.Length(min=1, max=512)


class EndUserPolicy(Schema):
    scope = fields.List(
        fields.String(validate=_slug),
        validate=validate.Length(min=1, max=50),
        metadata={"description": "Providers end-user tokens may use; ['*'] (the default): all."},
    )
    ttl = fields.Integer(
        validate=validate.Range(min=1), metadata={"description": "Seconds an end-user token lives (default 900)."}
    )
    environment = fields.String(validate=validate.OneOf(ENVIRONMENTS))


class IdentityProviderPut(Schema):
    issuer = fields.String(required=True, validate=_TEXT, metadata={"description": "The JWTs' exact `iss`."})
    jwks_url = fields.String(required=True, validate=_TEXT, metadata={"description": "Where its public keys are."})
    audience = fields.String(required=True, validate=_TEXT, metadata={"description": "The JWTs' exact `aud`."})
    algorithms = fields.List(
        fields.String(validate=validate.OneOf(ALGORITHMS)),
        validate=validate.Length(min=1, max=3),
        metadata={"description": "Allowed signature algorithms (default ['RS256'])."},
    )
    user_claim = fields.String(validate=validate.Length(min=1, max=64), metadata={"description": "Default `sub`."})
    policy = fields.Nested(EndUserPolicy)


class IdentityProvider(IdentityProviderPut):
    name = fields.String()
    policy = fields.Nested(EndUserPolicy)
    created_at = fields.String()
    updated_at = fields.String()


@blp.route("")
class IdentityProviders(MethodView):
    @blp.response(200, IdentityProvider(many=True))
    def get(self, org, project):
        """List the project's identity providers."""
        return identity_providers.list_all(vault(), actor(), org, project)


@blp.route("/<slug:name>")
class IdentityProviderByName(MethodView):
    @blp.arguments(IdentityProviderPut)
    @blp.response(200, IdentityProvider)
    def put(self, data, org, project, name):
        """Trust an identity provider, or change it (admins)."""
        return identity_providers.put(vault(), config(), actor(), org, project, name, data)

    @blp.response(200, IdentityProvider)
    def get(self, org, project, name):
        """Show an identity provider."""
        return identity_providers.show(vault(), actor(), org, project, name)

    @blp.response(204)
    def delete(self, org, project, name):
        """Stop trusting it: every end-user token minted from its JWTs is refused from now on."""
        identity_providers.delete(vault(), actor(), org, project, name)
