"""A project's usage: aggregates, records, a live SSE stream (viewers and up), GDPR erasure (admins)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

from flask import Response, current_app, request
from flask.views import MethodView
from flask_smorest import Blueprint
from marshmallow import Schema, fields, validate
from sqlalchemy.engine import Engine

from ..services import audit as audit_trail
from ..services import usage
from ..store.db import Unavailable
from . import auth
from .audit import db, millis

blp = Blueprint(
    "usage",
    __name__,
    url_prefix="/api/v1/orgs/<slug:org>/projects/<slug:project>/usage",
    description="Usage records of proxied calls.",
)

POLL_SECONDS = 1.0  # each call shows in the stream within this (plus the writer's second)
HEARTBEAT_SECONDS = 15.0


class Range(Schema):
    since = fields.AwareDateTime(metadata={"description": "From (ISO 8601 with offset); default 24 h ago."})
    until = fields.AwareDateTime(metadata={"description": "Before; default now."})


class AggregateQuery(Range):
    bucket = fields.String(load_default="hour", validate=validate.OneOf(list(usage.BUCKETS)))
    by = fields.List(
        fields.String(validate=validate.OneOf(usage.GROUPS)),
        load_default=list,
        metadata={"description": "Group also by these columns (repeat the parameter)."},
    )


class RecordsQuery(Range):
    token_id = fields.String(validate=validate.Length(max=64))
    provider = fields.String(validate=validate.Length(max=64))
    model = fields.String(validate=validate.Length(max=200))
    environment = fields.String(validate=validate.Length(max=32))
    status = fields.Integer()
    end_user = fields.String(validate=validate.Length(max=200))
    cursor = fields.Integer(validate=validate.Range(min=1, max=2**63 - 1))  # an SQL BIGINT id
    limit = fields.Integer(load_default=100, validate=validate.Range(min=1, max=usage.PAGE_LIMIT))


class EraseQuery(Schema):
    end_user = fields.String(required=True, validate=validate.Length(min=1, max=200))


class StreamQuery(Schema):
    since_id = fields.Integer(
        validate=validate.Range(min=0, max=2**63 - 1), metadata={"description": "Start after this id."}
    )


class Bucket(Schema):
    bucket = fields.String()
    token_id = fields.String(allow_none=True)
    provider = fields.String()
    model = fields.String(allow_none=True)
    environment = fields.String(allow_none=True)
    status = fields.Integer()
    calls = fields.Integer()
    errors = fields.Integer()
    prompt_tokens = fields.Integer()
    completion_tokens = fields.Integer()
    total_tokens = fields.Integer()
    bytes_in = fields.Integer()
    bytes_out = fields.Integer()
    avg_duration_ms = fields.Float()


class UsageRecord(Schema):
    id = fields.Integer()
    time = fields.String()
    token_id = fields.String(allow_none=True)
    token_name = fields.String(allow_none=True)
    environment = fields.String(allow_none=True)
    end_user = fields.String(allow_none=True)
    provider = fields.String()
    method = fields.String()
    path = fields.String()
    status = fields.Integer()
    duration_ms = fields.Integer()
    ttfb_ms = fields.Integer(allow_none=True)
    upstream_ms = fields.Integer(allow_none=True)
    bytes_in = fields.Integer()
    bytes_out = fields.Integer()
    model = fields.String(allow_none=True)
    prompt_tokens = fields.Integer(allow_none=True)
    completion_tokens = fields.Integer(allow_none=True)
    total_tokens = fields.Integer(allow_none=True)


class RecordsPage(Schema):
    records = fields.List(fields.Nested(UsageRecord))
    next_cursor = fields.Integer(allow_none=True)


class Erased(Schema):
    deleted = fields.Integer()


def _window(args: dict) -> tuple[int, int]:
    until = args.get("until") or datetime.now(UTC)
    since = args.get("since") or until - timedelta(days=1)
    return millis(since), millis(until)


@blp.route("")
class Usage(MethodView):
    @blp.arguments(AggregateQuery, location="query")
    @blp.response(200, Bucket(many=True))
    def get(self, args, org, project):
        """Calls, errors, tokens and bytes per hour or day, optionally per token, provider, model..."""
        auth.actor().require("viewer", org)
        since, until = _window(args)
        return usage.aggregate(
            db(), org, project, since_ms=since, until_ms=until, bucket=args["bucket"], by=tuple(args["by"])
        )

    @blp.arguments(EraseQuery, location="query")
    @blp.response(200, Erased)
    def delete(self, args, org, project):
        """Erase one end-user's usage records (GDPR); recorded in the audit trail."""
        auth.actor().require("admin", org)
        target = audit_trail.Target(org, project, args["end_user"])
        with audit_trail.changing(auth.actor(), "usage.erased", target):
            return {"deleted": usage.erase_end_user(db(), org, project, args["end_user"])}


@blp.route("/records")
class UsageRecords(MethodView):
    @blp.arguments(RecordsQuery, location="query")
    @blp.response(200, RecordsPage)
    def get(self, args, org, project):
        """Usage records, newest first, filtered; `next_cursor` pages on."""
        auth.actor().require("viewer", org)
        since, until = (millis(args.get("since")), millis(args.get("until")))
        filters = {k: args.get(k) for k in ("token_id", "provider", "model", "environment", "status", "end_user")}
        page = usage.records(
            db(),
            org,
            project,
            cursor=args.get("cursor"),
            limit=args["limit"],
            since_ms=since,
            until_ms=until,
            **filters,
        )
        return page


def _events(engine: Engine, org: str, project: str, after: int, seconds: float) -> Iterator[str]:
    """Poll the database (any worker or node may have written the record) until `seconds` pass."""
    ends = time.monotonic() + seconds
    quiet_since = time.monotonic()
    yield "retry: 2000\n\n"
    while time.monotonic() < ends:
        try:
            rows = usage.tail(engine, org, project, after)
        except Unavailable:
            rows = []  # the database is back soon, or the stream ends at its deadline
        for row in rows:
            after = row["id"]
            yield f"id: {after}\nevent: usage\ndata: {json.dumps(row, separators=(',', ':'))}\n\n"
        if rows:
            quiet_since = time.monotonic()
        elif time.monotonic() - quiet_since >= HEARTBEAT_SECONDS:
            quiet_since = time.monotonic()
            yield ": keep-alive\n\n"
        time.sleep(POLL_SECONDS)


@blp.route("/stream")
class UsageStream(MethodView):
    @blp.arguments(StreamQuery, location="query")
    @blp.response(200, description="Server-sent events, one `usage` event per record.")
    def get(self, args, org, project):
        """Live usage records (SSE): each call within about 2 s of its end; reconnects resume by id."""
        auth.actor().require("viewer", org)
        resume = request.headers.get("Last-Event-ID", "")
        after = args.get("since_id")
        if after is None:
            after = int(resume) if resume.isdigit() else usage.last_id(db(), org, project)
        seconds = current_app.extensions["jetpero"].config.JETPERO_USAGE_STREAM_SECONDS
        headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        return Response(_events(db(), org, project, after, seconds), mimetype="text/event-stream", headers=headers)
