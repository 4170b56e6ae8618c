"""An org's settings: retention of its usage records and audit records (owners and admins)."""

from __future__ import annotations

from flask.views import MethodView
from flask_smorest import Blueprint
from marshmallow import Schema, fields, validate

from ..services import org_settings
from . import auth
from .audit import db
from .context import vault

blp = Blueprint("settings", __name__, url_prefix="/api/v1/orgs", description="An org's settings.")

MAX_DAYS = 36_500


class Settings(Schema):
    usage_retention_days = fields.Integer(
        validate=validate.Range(min=1, max=MAX_DAYS),
        metadata={
            "description": f"Days usage records are kept (default {org_settings.DEFAULTS['usage_retention_days']})."
        },
    )
    audit_retention_days = fields.Integer(
        validate=validate.Range(min=1, max=MAX_DAYS),
        metadata={
            "description": f"Days audit records are kept (default {org_settings.DEFAULTS['audit_retention_days']})."
        },
    )


@blp.route("/<slug:org>/settings")
class OrgSettings(MethodView):
    @blp.response(200, Settings)
    def get(self, org):
        """The org's retention settings (defaults filled in)."""
        return org_settings.get(vault(), db(), auth.actor(), org)

    @blp.arguments(Settings)
    @blp.response(200, Settings)
    def put(self, data, org):
        """Set retention days (either or both); applied by the periodic retention job."""
        return org_settings.put(vault(), db(), auth.actor(), org, data)
