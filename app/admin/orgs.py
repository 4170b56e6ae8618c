"""Organisations: one Vault namespace each."""

from __future__ import annotations

from flask.views import MethodView
from flask_smorest import Blueprint

from ..vault import orgs
from . import auth
from .context import vault
from .schemas import Org, OrgCreate, OrgDeleteArgs

blp = Blueprint("orgs", __name__, url_prefix="/api/v1/orgs", description="Organisations (a Vault namespace each).")


@blp.route("")
class Orgs(MethodView):
    @blp.arguments(OrgCreate)
    @blp.response(201, Org)
    def post(self, data):
        """Create an organisation (operators)."""
        auth.require("operator")
        return orgs.create(vault(), slug=data["slug"], display_name=data.get("display_name", data["slug"]))

    @blp.response(200, Org(many=True))
    def get(self):
        """List the organisations you can see."""
        who = auth.require("viewer")
        if who["role"] == "operator":
            return orgs.list_all(vault())
        return [orgs.get(vault(), who["org"])]


@blp.route("/<slug:org>")
class OrgById(MethodView):
    @blp.response(200, Org)
    def get(self, org):
        """Show an organisation."""
        auth.require("viewer", org)
        return orgs.get(vault(), org)

    @blp.arguments(OrgDeleteArgs, location="query")
    @blp.response(204)
    def delete(self, args, org):
        """Delete an organisation; with projects only when `cascade=true` (their keys are destroyed)."""
        auth.require("owner", org)
        orgs.delete(vault(), org, cascade=args["cascade"])
