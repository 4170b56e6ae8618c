"""Org members: a role each, and an admin token shown once."""

from __future__ import annotations

from flask.views import MethodView
from flask_smorest import Blueprint

from ..services import members
from .auth import actor
from .context import config, vault
from .pages import LINK, PageArgs, answer
from .schemas import Member, MemberCreate, MemberCreated

blp = Blueprint("members", __name__, url_prefix="/api/v1/orgs/<slug:org>/members", description="Org members and roles.")


@blp.route("")
class Members(MethodView):
    @blp.arguments(MemberCreate)
    @blp.response(201, MemberCreated)
    def post(self, data, org):
        """Add a member with a role (never above your own); their token is shown once."""
        return members.add(vault(), config(), actor(), org, name=data["name"], role=data["role"])

    @blp.arguments(PageArgs, location="query")
    @blp.response(200, Member(many=True), headers=LINK)
    def get(self, args, org):
        """List the members (a page: see `Link`)."""
        return answer(members.list_all(vault(), actor(), org, **args), args)


@blp.route("/<string:member_id>")
class MemberById(MethodView):
    @blp.response(200, Member)
    def get(self, org, member_id):
        """Show a member."""
        return members.show(vault(), actor(), org, member_id)

    @blp.response(204)
    def delete(self, org, member_id):
        """Remove a member: their tokens stop working on every worker."""
        members.remove(vault(), actor(), org, member_id)
