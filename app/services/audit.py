"""The audit trail: every change recorded before it is made (fail closed), hash-chained per org.

    with audit.change(engine, actor, "provider.set", Target(org, project, "openai"), context):
        ...  # the Vault change: runs only once the "requested" record is written

Services use the trail bound to the unit of work they run in (a request, a CLI command, a job),
so they need neither the engine nor the request:

    with audit.bound(engine, Context(request_id, client_ip, user_agent)):  # the caller, once
        ...
        with audit.changing(actor, "project.created", Target(org, slug)):  # in the service
            ...  # the change; with no trail bound, AuditUnavailable: no record, no change

A record holds ids and names, never a key, a token value or a Vault path. Each org's records
form one chain (operator-level events have their own, `OPERATOR_CHAIN`): each record holds the
hash of the one before, so `verify(engine, chain)` names the first record edited or removed.
Every record is also one JSON log line on logger `jetpero.audit` (for a SIEM).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from ..store import audit_chain
from ..store.db import Unavailable, now_ms
from ..store.schema import audit_chains, audit_records
from .actor import Actor

log = logging.getLogger("jetpero.audit")

OPERATOR_CHAIN = "(operator)"  # not a slug, so no org's chain can take its name
PAGE_LIMIT = 500
EXPORT_BATCH = 500
HASHED = (
    "chain", "seq", "at_ms", "entry", "outcome", "error", "actor_kind", "actor_id", "actor_role", "action",
    "org", "project", "target", "detail", "request_id", "client_ip", "user_agent", "prev_hash",
)  # fmt: skip
FIELDS = ("id", *HASHED, "hash")


class AuditUnavailable(Unavailable):
    """The audit record could not be written, so the change was not made (503, retry later)."""


@dataclass(frozen=True)
class Target:
    org: str | None = None
    project: str | None = None
    name: str | None = None  # provider name, token id, member id

    @property
    def chain(self) -> str:
        return self.org or OPERATOR_CHAIN


@dataclass(frozen=True)
class Context:
    request_id: str | None = None
    client_ip: str | None = None
    user_agent: str | None = None


@dataclass
class Entry:
    """A change in progress: `id` links its records; a body may set `error` to a failure's kind."""

    id: str
    error: str | None = None


def digest(record: dict) -> str:
    canonical = json.dumps([record[name] for name in HASHED], separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


def record(
    engine: Engine,
    actor: Actor,
    action: str,
    target: Target,
    context: Context | None = None,
    *,
    outcome: str,
    entry: str | None = None,
    error: str | None = None,
    detail: str | None = None,
) -> dict:
    """Write one record (and its log line); raise AuditUnavailable if it cannot be written."""
    context = context or Context()
    fields = {
        "chain": target.chain, "at_ms": now_ms(), "entry": entry or uuid.uuid4().hex, "outcome": outcome,
        "error": error, "actor_kind": actor.kind, "actor_id": actor.id, "actor_role": actor.role,
        "action": action, "org": target.org, "project": target.project, "target": target.name,
        "detail": detail, "request_id": context.request_id, "client_ip": context.client_ip,
        "user_agent": context.user_agent or None,
    }  # fmt: skip
    for name, value in fields.items():  # a value longer than its column is cut, never refused
        if isinstance(value, str):
            fields[name] = value[: audit_records.c[name].type.length]
    try:
        written = audit_chain.append(engine, fields, digest)
    except SQLAlchemyError:
        log.error("audit record not written", extra={"fields": {"audit": {**fields, "outcome": "unwritten"}}})
        raise AuditUnavailable("the audit trail cannot be written") from None
    log.info("audit", extra={"fields": {"audit": public(written)}})
    return written


@contextmanager
def change(
    engine: Engine,
    actor: Actor,
    action: str,
    target: Target,
    context: Context | None = None,
    *,
    detail: str | None = None,
) -> Iterator[Entry]:
    """Record "requested", run the body, record "succeeded" or "failed" (with the error's kind).

    If "requested" cannot be written, AuditUnavailable is raised and the body never runs. If the
    outcome cannot be written after the change was made, the change stands (it cannot be undone)
    and the chain shows a "requested" record without outcome; the failure is logged.
    """
    requested = record(engine, actor, action, target, context, outcome="requested", detail=detail)
    current = Entry(requested["entry"])
    try:
        yield current
    except BaseException as exc:
        _outcome(engine, actor, action, target, context, current, "failed", type(exc).__name__)
        raise
    _outcome(engine, actor, action, target, context, current, "succeeded", None)


_trail: ContextVar[tuple[Engine, Context] | None] = ContextVar("jetpero_audit_trail", default=None)


@contextmanager
def bound(engine: Engine, context: Context | None = None) -> Iterator[None]:
    """Bind the trail (its database and the caller's request id, IP, user agent) to this unit of
    work (contextvars: per thread and per greenlet)."""
    token = _trail.set((engine, context or Context()))
    try:
        yield
    finally:
        _trail.reset(token)


def bound_engine() -> Engine | None:
    """The database of the trail bound to this unit of work (None when none is)."""
    trail = _trail.get()
    return trail[0] if trail else None


def changing(actor: Actor, action: str, target: Target, *, detail: str | None = None):
    """`change` on the bound trail; with none bound, AuditUnavailable (no record, no change)."""
    trail = _trail.get()
    if trail is None:
        log.error("no audit trail bound for %s: change refused", action)
        raise AuditUnavailable()
    return change(trail[0], actor, action, target, trail[1], detail=detail)


def refused(actor: Actor, action: str, target: Target, *, reason: str) -> None:
    """`event` on the bound trail (a refused call); never raises, does nothing with no trail."""
    trail = _trail.get()
    if trail is not None:
        event(trail[0], actor, action, target, trail[1], reason=reason)


def _outcome(engine, actor, action, target, context, current: Entry, outcome: str, error: str | None) -> None:
    try:
        record(engine, actor, action, target, context, outcome=outcome, entry=current.id, error=current.error or error)
    except AuditUnavailable:
        pass  # logged by record(); the change itself has already happened or failed


def event(
    engine: Engine, actor: Actor, action: str, target: Target, context: Context | None = None, *, reason: str
) -> None:
    """A one-shot security event (e.g. `auth.refused` with its reason); never raises."""
    try:
        record(engine, actor, action, target, context, outcome="refused", detail=reason)
    except AuditUnavailable:
        pass


def public(row) -> dict:
    """A record as the API, the exports and the log show it (time as ISO 8601 UTC)."""
    data = {name: row[name] for name in FIELDS if name in row}
    data["time"] = datetime.fromtimestamp(data["at_ms"] / 1000, UTC).isoformat(timespec="milliseconds")
    return data


def verify(engine: Engine, chain: str) -> dict:
    """Check a chain end to end: `{"ok", "checked", "broken": {"seq", "id", "reason"} | None}`."""
    try:
        with engine.connect() as conn:
            head = conn.execute(select(audit_chains).where(audit_chains.c.chain == chain)).mappings().first()
            if head is None:
                return {"chain": chain, "ok": True, "checked": 0, "broken": None}
            expected_seq, expected_hash = head["trimmed_seq"] + 1, head["trimmed_hash"]
            checked = 0
            rows = conn.execute(
                select(audit_records).where(audit_records.c.chain == chain).order_by(audit_records.c.seq)
            ).mappings()
            for row in rows:
                reason = None
                if row["seq"] != expected_seq:
                    broken = {"seq": expected_seq, "id": None, "reason": "this record is missing (deleted)"}
                    return {"chain": chain, "ok": False, "checked": checked, "broken": broken}
                if row["prev_hash"] != expected_hash:
                    reason = "its previous-hash does not match the record before it"
                elif digest(row) != row["hash"]:
                    reason = "its content does not match its hash (edited)"
                if reason:
                    return {"chain": chain, "ok": False, "checked": checked, "broken": _broken(row, reason)}
                expected_seq, expected_hash, checked = row["seq"] + 1, row["hash"], checked + 1
            if head["seq"] != expected_seq - 1 or head["hash"] != expected_hash:
                broken = {
                    "seq": expected_seq,
                    "id": None,
                    "reason": "records after it are missing (chain head differs)",
                }
                return {"chain": chain, "ok": False, "checked": checked, "broken": broken}
    except SQLAlchemyError:
        raise Unavailable("the database cannot be read") from None
    return {"chain": chain, "ok": True, "checked": checked, "broken": None}


def _broken(row, reason: str) -> dict:
    return {"seq": row["seq"], "id": row["id"], "reason": reason}


def query(engine: Engine, chain: str, *, cursor: int | None = None, limit: int = 100, **filters) -> dict:
    """Newest first: `{"records": [...], "next_cursor": id | None}` (pass it back as `cursor`)."""
    limit = max(1, min(limit, PAGE_LIMIT))
    statement = audit_chain.filtered(chain, filters).order_by(audit_records.c.id.desc()).limit(limit + 1)
    if cursor is not None:
        statement = statement.where(audit_records.c.id < cursor)
    try:
        with engine.connect() as conn:
            rows = [public(row) for row in conn.execute(statement).mappings()]
    except SQLAlchemyError:
        raise Unavailable("the database cannot be read") from None
    more = len(rows) > limit
    return {"records": rows[:limit], "next_cursor": rows[limit - 1]["id"] if more else None}


def _export_rows(engine: Engine, chain: str, filters: dict) -> Iterator[dict]:
    """Oldest first, a short read per batch (no connection held while the client reads)."""
    after = 0
    while True:
        statement = audit_chain.filtered(chain, filters).where(audit_records.c.id > after)
        with engine.connect() as conn:
            batch = [
                public(r) for r in conn.execute(statement.order_by(audit_records.c.id).limit(EXPORT_BATCH)).mappings()
            ]
        yield from batch
        if len(batch) < EXPORT_BATCH:
            return
        after = batch[-1]["id"]


def export_jsonl(engine: Engine, chain: str, **filters) -> Iterator[str]:
    """The chain's records as JSON Lines, streamed."""
    for row in _export_rows(engine, chain, filters):
        yield json.dumps(row, separators=(",", ":")) + "\n"


def _cell(value: object) -> object:
    """No spreadsheet formula from a user agent: a leading = + - @ is quoted with '."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def export_csv(engine: Engine, chain: str, **filters) -> Iterator[str]:
    """The chain's records as CSV with a header row, streamed."""
    columns = ("time", *FIELDS)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, columns, extrasaction="ignore")
    writer.writeheader()
    for row in _export_rows(engine, chain, filters):
        writer.writerow({k: _cell(v) for k, v in row.items()})
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
    yield buffer.getvalue()
