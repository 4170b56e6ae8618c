"""Project tokens: what apps and browsers send to the proxy."""

from __future__ import annotations

from flask.views import MethodView
from flask_smorest import Blueprint

from ..services import project_tokens
from .auth import actor
from .context import config, vault
from .pages import LINK, PageArgs, answer
from .schemas import Token, TokenCreate, TokenCreated

blp = Blueprint(
    "tokens",
    __name__,
    url_prefix="/api/v1/orgs/<slug:org>/projects/<slug:project>/tokens",
    description="Project tokens: per environment, expiring, revocable, scoped.",
)


@blp.route("")
class Tokens(MethodView):
    @blp.arguments(TokenCreate)
    @blp.response(201, TokenCreated)
    def post(self, data, org, project):
        """Issue a project token; its value is shown once."""
        return project_tokens.issue(vault(), config(), actor(), org, project, data)

    @blp.arguments(PageArgs, location="query")
    @blp.response(200, Token(many=True), headers=LINK)
    def get(self, args, org, project):
        """List the project's tokens, never their values (a page: see `Link`)."""
        return answer(project_tokens.list_all(vault(), actor(), org, project, **args), args)


@blp.route("/<string:token_id>")
class TokenById(MethodView):
    @blp.response(200, Token)
    def get(self, org, project, token_id):
        """Show a token's metadata."""
        return project_tokens.show(vault(), actor(), org, project, token_id)

    @blp.response(204)
    def delete(self, org, project, token_id):
        """Revoke a token: refused at once here, within the sync bound on every worker."""
        project_tokens.revoke(vault(), actor(), org, project, token_id)
