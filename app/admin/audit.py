"""The audit trail's read API: an org's records (owner, admin, operator), operator-level events.

Also the admin request cycle's trail: `bind_trail` (before authentication, so refused calls are
recorded) binds `services.audit` to this database and the request's `context()`; `unbind_trail`.
"""

from __future__ import annotations

from contextlib import ExitStack

from flask import Response, current_app, g, request
from flask.views import MethodView
from flask_smorest import Blueprint
from marshmallow import Schema, fields, validate
from sqlalchemy.engine import Engine

from .. import observability
from ..services import audit
from . import auth

blp = Blueprint("audit", __name__, url_prefix="/api/v1", description="The audit trail (hash-chained per org).")

EXPORTS = {"jsonl": "application/x-ndjson", "csv": "text/csv; charset=utf-8"}


def db() -> Engine:
    return current_app.extensions["jetpero.db"]


def context() -> audit.Context:
    """The request's id, client address (as the trusted-proxy setting resolved it) and user agent."""
    return audit.Context(observability.request_id(), request.remote_addr, request.user_agent.string or None)


def bind_trail() -> None:
    """before_request hook: every change this request makes is recorded on this trail."""
    g.audit_trail = stack = ExitStack()
    stack.enter_context(audit.bound(db(), context()))


def unbind_trail(_exc: BaseException | None = None) -> None:
    """teardown_request hook: the request's trail is unbound."""
    stack = g.pop("audit_trail", None)
    if stack is not None:
        stack.close()


def millis(value) -> int | None:
    return None if value is None else int(value.timestamp() * 1000)


class AuditQuery(Schema):
    actor = fields.String(validate=validate.Length(max=120), metadata={"description": "Member or operator id."})
    action = fields.String(validate=validate.Length(max=64), metadata={"description": "e.g. `provider.set`."})
    target = fields.String(validate=validate.Length(max=200), metadata={"description": "Project, provider, id."})
    since = fields.AwareDateTime(metadata={"description": "From this time (ISO 8601 with offset)."})
    until = fields.AwareDateTime(metadata={"description": "Before this time."})
    cursor = fields.Integer(
        validate=validate.Range(min=1, max=2**63 - 1), metadata={"description": "`next_cursor` of a page."}
    )
    limit = fields.Integer(load_default=100, validate=validate.Range(min=1, max=audit.PAGE_LIMIT))
    format = fields.String(
        load_default="json",
        validate=validate.OneOf(["json", *EXPORTS]),
        metadata={"description": "`jsonl` or `csv`: every matching record, oldest first, streamed."},
    )


class AuditRecord(Schema):
    id = fields.Integer()
    time = fields.String()
    chain = fields.String()
    seq = fields.Integer()
    entry = fields.String()
    outcome = fields.String(metadata={"description": "requested, succeeded, failed or refused."})
    error = fields.String(allow_none=True)
    actor_kind = fields.String()
    actor_id = fields.String(allow_none=True)
    actor_role = fields.String(allow_none=True)
    action = fields.String()
    org = fields.String(allow_none=True)
    project = fields.String(allow_none=True)
    target = fields.String(allow_none=True)
    detail = fields.String(allow_none=True)
    request_id = fields.String(allow_none=True)
    client_ip = fields.String(allow_none=True)
    user_agent = fields.String(allow_none=True)
    prev_hash = fields.String()
    hash = fields.String()


class AuditPage(Schema):
    records = fields.List(fields.Nested(AuditRecord))
    next_cursor = fields.Integer(allow_none=True, metadata={"description": "Pass as `cursor` for older records."})


class Broken(Schema):
    seq = fields.Integer()
    id = fields.Integer(allow_none=True)
    reason = fields.String()


class Verdict(Schema):
    chain = fields.String()
    ok = fields.Boolean()
    checked = fields.Integer()
    broken = fields.Nested(Broken, allow_none=True, metadata={"description": "The first broken record."})


def _answer(chain: str, args: dict):
    filters = {name: args.get(name) for name in ("actor", "action", "target")}
    filters.update(since_ms=millis(args.get("since")), until_ms=millis(args.get("until")))
    kind = args["format"]
    if kind == "json":
        return audit.query(db(), chain, cursor=args.get("cursor"), limit=args["limit"], **filters)
    rows = audit.export_jsonl(db(), chain, **filters) if kind == "jsonl" else audit.export_csv(db(), chain, **filters)
    name = "operator" if chain == audit.OPERATOR_CHAIN else chain
    disposition = f'attachment; filename="audit-{name}.{kind}"'
    return Response(rows, content_type=EXPORTS[kind], headers={"Content-Disposition": disposition})


def _exports(view):
    """The export formats' own 200s in the OpenAPI document, beside the JSON page."""
    for kind, content_type in EXPORTS.items():
        view = blp.alt_response(
            200, schema={"type": "string"}, content_type=content_type, description=f"format={kind}", success=True
        )(view)
    return view


@blp.route("/orgs/<slug:org>/audit")
class OrgAudit(MethodView):
    @blp.arguments(AuditQuery, location="query")
    @blp.response(200, AuditPage)
    @_exports
    def get(self, args, org):
        """The org's audit records, newest first (or exported with `format`)."""
        auth.actor().require("admin", org)
        return _answer(org, args)


@blp.route("/orgs/<slug:org>/audit/verify")
class OrgAuditVerify(MethodView):
    @blp.response(200, Verdict)
    def get(self, org):
        """Check the org's hash chain; names the first broken record."""
        auth.actor().require("admin", org)
        return audit.verify(db(), org)


@blp.route("/audit")
class OperatorAudit(MethodView):
    @blp.arguments(AuditQuery, location="query")
    @blp.response(200, AuditPage)
    @_exports
    def get(self, args):
        """Operator-level audit records (orgs created or deleted, operator tokens), newest first."""
        auth.actor().require("operator")
        return _answer(audit.OPERATOR_CHAIN, args)


@blp.route("/audit/verify")
class OperatorAuditVerify(MethodView):
    @blp.response(200, Verdict)
    def get(self):
        """Check the operator-level hash chain; names the first broken record."""
        auth.actor().require("operator")
        return audit.verify(db(), audit.OPERATOR_CHAIN)
