"""Project tokens: what apps and browsers send to the proxy."""

from __future__ import annotations

from flask.views import MethodView
from flask_smorest import Blueprint

from .. import tokens
from ..errors import ApiError
from ..vault import project_tokens, projects, provider_keys
from . import auth
from .context import hex_id, vault, worker
from .schemas import Token, TokenCreate, TokenCreated

blp = Blueprint(
    "tokens",
    __name__,
    url_prefix="/api/v1/orgs/<slug:org>/projects/<slug:project>/tokens",
    description="Project tokens: per environment, expiring, revocable, scoped.",
)


def _validated(data: dict, org: str, project: str) -> tuple[list[str], list[str] | None]:
    config = worker().config
    if data["expires_in"] > config.JETPERO_MAX_TOKEN_TTL:
        raise ApiError(422, f"expires_in is above the maximum of {config.JETPERO_MAX_TOKEN_TTL} seconds.")
    project_record = projects.get(vault(), org, project)
    scope = data.get("scope") or ["*"]
    if scope != ["*"]:
        known = {p["name"] for p in provider_keys.list_all(vault(), org, project)}
        unknown = sorted(set(scope) - known)
        if unknown:
            raise ApiError(422, f"scope names providers the project does not have: {', '.join(unknown)}.")
    origins = data.get("allowed_origins")
    if origins is not None and not set(origins) <= set(project_record["allowed_origins"]):
        raise ApiError(422, "allowed_origins must be a subset of the project's allowed origins.")
    return sorted(set(scope)), origins


@blp.route("")
class Tokens(MethodView):
    @blp.arguments(TokenCreate)
    @blp.response(201, TokenCreated)
    def post(self, data, org, project):
        """Issue a project token; its value is shown once."""
        who = auth.require("developer", org)
        scope, origins = _validated(data, org, project)
        claims = tokens.standard_claims(
            issuer=worker().config.JETPERO_ISSUER,
            subject=f"{org}/{project}",
            audience=tokens.PROXY_AUDIENCE,
            ttl=data["expires_in"],
        )
        claims.update(env=data["environment"], scope=" ".join(scope))
        record = {
            "name": data["name"],
            "environment": data["environment"],
            "scope": scope,
            "allowed_origins": origins,
            "expires_at": claims["exp"],
            "created_by": who["sub"],
        }
        public, value = project_tokens.create(vault(), org, project, claims=claims, record=record)
        return {**public, "token": value}

    @blp.response(200, Token(many=True))
    def get(self, org, project):
        """List the project's tokens (never their values)."""
        auth.require("viewer", org)
        return project_tokens.list_all(vault(), org, project)


@blp.route("/<string:token_id>")
class TokenById(MethodView):
    @blp.response(200, Token)
    def get(self, org, project, token_id):
        """Show a token's metadata."""
        auth.require("viewer", org)
        return project_tokens.get(vault(), org, project, hex_id(token_id, 32))

    @blp.response(204)
    def delete(self, org, project, token_id):
        """Revoke a token: refused at once here, within the sync bound on every worker."""
        auth.require("developer", org)
        project_tokens.revoke(vault(), org, project, hex_id(token_id, 32))
