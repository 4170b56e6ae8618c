"""Limits, IP allowlists, scopes and prices: a project's policy, a token's own, a provider's prices.

Roles: admins set a project's policy and a provider's prices; developers set a token's policy,
which is never looser than its project's (its limits apply only where tighter, its allowlist is
checked as well as the project's). Anyone in the org may read them. Shapes are checked here,
values by the rules' own parsers (422 naming the field).
"""

from __future__ import annotations

from flask.views import MethodView
from flask_smorest import Blueprint
from marshmallow import Schema, ValidationError, fields, validate

from ..services import policies
from .auth import actor
from .context import vault

blp = Blueprint(
    "policies",
    __name__,
    url_prefix="/api/v1/orgs/<slug:org>/projects/<slug:project>",
    description="Rate limits, budgets, IP allowlists, granular scopes and per-model prices.",
)

_COUNT = {"strict": True, "allow_none": True, "validate": validate.Range(min=1)}


def _positive(value) -> None:
    if value <= 0:
        raise ValidationError("Must be greater than 0.")


def _not_negative(value) -> None:
    if value < 0:
        raise ValidationError("Must be 0 or more.")


class Amount(fields.Decimal):
    """A decimal amount, sent and answered as a string ("0.50"): a JSON number would be rounded
    by some clients. Its bounds are checked by the functions above rather than `validate.Range`,
    which the OpenAPI document would render as a string bound."""

    def __init__(self, **kwargs) -> None:
        kwargs["metadata"] = {"type": "string", "pattern": r"^[0-9]{1,12}(\.[0-9]{1,12})?$", "example": "0.50"}
        super().__init__(as_string=True, **kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, str):
            raise ValidationError('An amount is a decimal string, e.g. "0.50".')
        return super()._deserialize(value, attr, data, **kwargs)


_MONEY = {"allow_none": True, "validate": _positive}


class Limits(Schema):
    """Each unset (or null) field is no limit of that kind; costs are in the prices' currency."""

    requests_per_second = fields.Integer(**_COUNT)
    requests_per_minute = fields.Integer(**_COUNT)
    requests_per_day = fields.Integer(**_COUNT)
    concurrent_streams = fields.Integer(**_COUNT)
    tokens_per_day = fields.Integer(**_COUNT, metadata={"description": "prompt + completion tokens"})
    tokens_per_month = fields.Integer(**_COUNT)
    cost_per_day = Amount(**_MONEY)
    cost_per_month = Amount(**_MONEY)


_ALLOWLIST = fields.List(
    fields.String(),
    allow_none=True,
    metadata={"description": "CIDRs (IPv4 and IPv6) the client IP must be in; null: every address."},
)


class ProjectPolicy(Schema):
    limits = fields.Nested(Limits, metadata={"description": "Defaults of every token, and their ceiling."})
    end_user_limits = fields.Nested(Limits, metadata={"description": "Per end user (`end_user` tokens)."})
    ip_limits = fields.Nested(Limits, metadata={"description": "Per client IP."})
    ip_allowlist = _ALLOWLIST
    estimate_tokens = fields.Integer(
        strict=True,
        allow_none=True,
        metadata={"description": "Completion tokens a request without max_tokens reserves (default 4096)."},
    )


class ProjectPolicyOut(ProjectPolicy):
    updated_at = fields.String(allow_none=True)
    updated_by = fields.String(allow_none=True)


class TokenPolicy(Schema):
    limits = fields.Nested(Limits, metadata={"description": "Applied only where tighter than the project's."})
    ip_allowlist = _ALLOWLIST
    routes = fields.List(
        fields.String(), metadata={"description": "Allowed `METHOD path` patterns, e.g. `POST v1/chat/completions`."}
    )
    models = fields.List(fields.String(), metadata={"description": "Allowed models or patterns, e.g. `gpt-4o*`."})


class TokenPolicyOut(TokenPolicy):
    token_id = fields.String()
    effective_limits = fields.Nested(Limits, metadata={"description": "The token's limits within the project's."})
    updated_at = fields.String(allow_none=True)
    updated_by = fields.String(allow_none=True)


class Price(Schema):
    input_per_1k = Amount(required=True, validate=_not_negative)
    output_per_1k = Amount(required=True, validate=_not_negative)


class Prices(Schema):
    models = fields.Dict(
        keys=fields.String(),
        values=fields.Nested(Price),
        required=True,
        metadata={"description": "Model name or pattern (`*`: any other) -> price per 1,000 tokens."},
    )


class PricesOut(Prices):
    provider = fields.String()
    updated_at = fields.String(allow_none=True)
    updated_by = fields.String(allow_none=True)


@blp.route("/policy")
class ProjectPolicyView(MethodView):
    @blp.response(200, ProjectPolicyOut)
    def get(self, org, project):
        """The project's limits, per-end-user and per-IP limits and IP allowlist."""
        return policies.show_project(vault(), actor(), org, project)

    @blp.arguments(ProjectPolicy)
    @blp.response(200, ProjectPolicyOut)
    def put(self, data, org, project):
        """Replace the project's policy (admins); on every worker within the sync bound."""
        return policies.set_project(vault(), actor(), org, project, data)


@blp.route("/tokens/<string:token_id>/policy")
class TokenPolicyView(MethodView):
    @blp.response(200, TokenPolicyOut)
    def get(self, org, project, token_id):
        """A token's own limits, IP allowlist and scope, and its effective limits."""
        return policies.show_token(vault(), actor(), org, project, token_id)

    @blp.arguments(TokenPolicy)
    @blp.response(200, TokenPolicyOut)
    def put(self, data, org, project, token_id):
        """Replace a token's own policy (developers); never looser than the project's."""
        return policies.set_token(vault(), actor(), org, project, token_id, data)


@blp.route("/providers/<slug:name>/prices")
class PricesView(MethodView):
    @blp.response(200, PricesOut)
    def get(self, org, project, name):
        """A provider's per-model prices (what cost budgets charge)."""
        return policies.show_prices(vault(), actor(), org, project, name)

    @blp.arguments(Prices)
    @blp.response(200, PricesOut)
    def put(self, data, org, project, name):
        """Replace a provider's per-model prices (admins)."""
        return policies.set_prices(vault(), actor(), org, project, name, data)
