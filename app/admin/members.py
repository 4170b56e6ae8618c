"""Org members: a role each, and an admin token shown once."""

from __future__ import annotations

from flask.views import MethodView
from flask_smorest import Blueprint

from .. import tokens
from ..errors import ApiError
from ..vault import members, orgs, signing
from ..vault.orgs import quietly
from . import auth
from .context import hex_id, vault, worker
from .schemas import Member, MemberCreate, MemberCreated

blp = Blueprint("members", __name__, url_prefix="/api/v1/orgs/<slug:org>/members", description="Org members and roles.")


def mint_admin_token(*, subject: str, role: str, org: str | None) -> dict:
    """An admin token for a principal; the value is returned here and never stored."""
    config = worker().config
    claims = tokens.standard_claims(
        issuer=config.JETPERO_ISSUER,
        subject=subject,
        audience=tokens.ADMIN_AUDIENCE,
        ttl=config.JETPERO_ADMIN_TOKEN_TTL,
    )
    claims.update(role=role, org=org)
    return {"token": signing.sign_admin(vault(), claims), "expires_at": claims["exp"]}


@blp.route("")
class Members(MethodView):
    @blp.arguments(MemberCreate)
    @blp.response(201, MemberCreated)
    def post(self, data, org):
        """Add a member with a role (never above your own); their token is shown once."""
        who = auth.require("admin", org)
        if not auth.can_grant(who, data["role"]):
            raise ApiError(403, "You cannot grant a role above your own.")
        orgs.get(vault(), org)
        member = members.add(vault(), org, name=data["name"], role=data["role"], created_by=who["sub"])
        try:
            issued = mint_admin_token(subject=f"member:{org}:{member['id']}", role=data["role"], org=org)
        except BaseException:
            quietly(lambda: members.remove(vault(), org, member["id"]))
            raise
        return {**member, **issued}

    @blp.response(200, Member(many=True))
    def get(self, org):
        """List the members."""
        auth.require("viewer", org)
        return members.list_all(vault(), org)


@blp.route("/<string:member_id>")
class MemberById(MethodView):
    @blp.response(200, Member)
    def get(self, org, member_id):
        """Show a member."""
        auth.require("viewer", org)
        return members.get(vault(), org, hex_id(member_id, 16))

    @blp.response(204)
    def delete(self, org, member_id):
        """Remove a member: their tokens stop working on every worker."""
        who = auth.require("admin", org)
        member = members.get(vault(), org, hex_id(member_id, 16))
        if not auth.can_grant(who, member["role"]):
            raise ApiError(403, "You cannot remove a member whose role is above your own.")
        members.remove(vault(), org, member["id"])
