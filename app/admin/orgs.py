"""Organisations: one Vault namespace each."""

from __future__ import annotations

from flask.views import MethodView
from flask_smorest import Blueprint

from ..services import cascade, orgs
from .auth import actor
from .context import vault
from .pages import LINK, PageArgs, answer
from .schemas import Org, OrgCreate, OrgDeleteArgs

blp = Blueprint("orgs", __name__, url_prefix="/api/v1/orgs", description="Organisations (a Vault namespace each).")


@blp.route("")
class Orgs(MethodView):
    @blp.arguments(OrgCreate)
    @blp.response(201, Org)
    def post(self, data):
        """Create an organisation (operators)."""
        return orgs.create(vault(), actor(), slug=data["slug"], display_name=data.get("display_name", data["slug"]))

    @blp.arguments(PageArgs, location="query")
    @blp.response(200, Org(many=True), headers=LINK)
    def get(self, args):
        """List the organisations you can see (a page: see `Link`)."""
        return answer(orgs.list_all(vault(), actor(), **args), args)


@blp.route("/<slug:org>")
class OrgById(MethodView):
    @blp.response(200, Org)
    def get(self, org):
        """Show an organisation."""
        return orgs.show(vault(), actor(), org)

    @blp.arguments(OrgDeleteArgs, location="query")
    @blp.response(204)
    def delete(self, args, org):
        """Delete an organisation; with projects only when `cascade=true` (their keys are destroyed)."""
        cascade.delete_org(vault(), actor(), org, cascade=args["cascade"])
