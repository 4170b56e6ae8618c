"""Usage records: written off the request's path by a per-worker batch writer, then queried.

`UsageWriter.record(...)` only appends to a bounded queue (never blocks, never raises); the
writer's thread writes what is queued at most once a second, in one transaction. While the
database is down records wait up to the bound; past it they are counted in `dropped`.
"""

from __future__ import annotations

import logging
import operator
import os
import socket
import sys
import threading
import time
from collections import deque
from datetime import UTC, datetime

from sqlalchemy import case, delete, func, insert, select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from ..store import audit_chain, leases, settings
from ..store.db import Unavailable, is_unavailable, now_ms
from ..store.schema import usage_records
from . import audit

log = logging.getLogger("jetpero.usage")

_COLUMNS = tuple(c for c in usage_records.columns if c.name != "id")
COLUMNS = tuple(c.name for c in _COLUMNS)  # a queued record: one value per column, in this order
_REQUIRED = tuple(i for i, c in enumerate(_COLUMNS) if not c.nullable and c.default is None)
_ZERO = tuple(i for i, c in enumerate(_COLUMNS) if c.default is not None)  # bytes_in, bytes_out
_required, _defaulted = operator.itemgetter(*_REQUIRED), operator.itemgetter(*_ZERO)
_CUT = tuple((i, c.type.length) for i, c in enumerate(_COLUMNS) if getattr(c.type, "length", None))
_texts, _LENGTHS = operator.itemgetter(*(i for i, _ in _CUT)), tuple(length for _, length in _CUT)
GROUPS = ("token_id", "provider", "model", "environment", "status")
BUCKETS = {"hour": 3_600_000, "day": 86_400_000}
PAGE_LIMIT = 500
DAY_MS = 86_400_000


class UsageWriter:
    """One per worker process; `start()` after the fork, `stop()` flushes what is queued."""

    def __init__(self, engine: Engine, *, bound: int = 100_000, interval: float = 1.0):
        self.engine = engine
        self.bound = bound
        self.interval = interval
        self.dropped = 0  # records lost: the queue was full (published as jetpero_usage_dropped_total)
        self.written = 0
        self._queue: deque = deque()
        self._held: list = []  # taken from the queue, not yet committed
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pid = 0

    def add(self, row: tuple) -> None:
        """Queue one record: a value per column of `COLUMNS`, in its order (what the proxy's usage
        concern builds, the cheapest form). Never raises; past the bound it is counted as dropped."""
        if len(self._queue) + len(self._held) >= self.bound:
            self.dropped += 1
        else:
            self._queue.append(row)

    def record(self, **fields: object) -> None:
        """Queue one record by column name (`at_ms` defaults to now). Never raises."""
        try:
            fields.setdefault("at_ms", now_ms())
            self.add(tuple(map(fields.get, COLUMNS)))
        except Exception:  # noqa: BLE001 - the usage path must never fail a proxied call
            self.dropped += 1

    def start(self) -> None:
        """Start the writer thread in this process (idempotent; a forked child starts its own)."""
        if self._thread is not None and self._pid == os.getpid() and self._thread.is_alive():
            return
        self._pid = os.getpid()
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="usage-writer", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.interval + 5)
        self.flush()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.flush()

    def flush(self) -> int:
        """Write what is queued in one transaction; on failure keep it for the next try."""
        while self._queue and len(self._held) < self.bound:
            self._held.append(self._queue.popleft())
        if not self._held:
            return 0
        rows = [row for row in map(_row, self._held) if row is not None]
        self.dropped += len(self._held) - len(rows)  # a record without a required column
        try:
            if rows:
                off_the_loop(self._insert, rows)
        except SQLAlchemyError as exc:
            if is_unavailable(exc):
                log.warning(
                    "usage records not written yet: database unavailable", extra={"fields": {"held": len(rows)}}
                )
                return 0
            log.error("usage records refused by the database: dropped", extra={"fields": {"dropped": len(rows)}})
            self.dropped += len(rows)  # a bad record must not block the queue forever
        else:
            self.written += len(rows)
        self._held = []
        return len(rows)

    def _insert(self, rows: list[tuple]) -> None:
        """One transaction through the driver's bulk path: PostgreSQL's COPY, else executemany
        (what SQLAlchemy's `insert()` would add per row, bind processing, none of these columns needs)."""
        with self.engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                _copy(conn.connection.driver_connection, rows)
            else:
                _executemany(conn, rows)


def _copy(connection, rows: list[tuple]) -> None:
    """psycopg's COPY; its errors as SQLAlchemy's (a raw cursor's are not wrapped)."""
    import psycopg  # noqa: PLC0415 - only with PostgreSQL

    try:
        with connection.cursor() as cursor, cursor.copy(_COPY) as copy:
            for row in rows:
                copy.write_row(row)
    except psycopg.Error as exc:
        raise DBAPIError.instance(_COPY, None, exc, psycopg.Error) from exc


_COPY = f"COPY usage_records ({', '.join(COLUMNS)}) FROM STDIN"


def _executemany(conn, rows: list[tuple]) -> None:
    """The driver's executemany of SQLAlchemy's own INSERT, compiled once per dialect."""
    compiled = _INSERTS.get(conn.dialect.name)
    if compiled is None:
        compiled = _INSERTS[conn.dialect.name] = insert(usage_records).compile(
            dialect=conn.dialect, column_keys=COLUMNS
        )
    params = rows if compiled.positional else [dict(zip(COLUMNS, row, strict=True)) for row in rows]
    conn.exec_driver_sql(compiled.string, params)


_INSERTS: dict = {}


def _row(record: tuple) -> tuple | None:
    """A queued record as the row written: defaults filled, long text cut (a long path or model
    name is cut, not a refused batch); None if it lacks a required column or is not a row."""
    if not isinstance(record, tuple) or len(record) != len(COLUMNS) or None in _required(record):
        return None
    if None in _defaulted(record):
        record = tuple(0 if value is None and i in _ZERO else value for i, value in enumerate(record))
    if any(map(operator.gt, map(len, map(str, _texts(record))), _LENGTHS)):  # C-level: str(None) is short
        for i, length in _CUT:
            value = record[i]
            if isinstance(value, str) and len(value) > length:
                record = (*record[:i], value[:length], *record[i + 1 :])
    return record


def off_the_loop(fn, *args):
    """`fn(*args)` in a real OS thread when gevent has patched threading (a database call in a
    greenlet would stall the whole worker); the greenlet waits cooperatively. Else a plain call."""
    if _gevent_patched():
        import gevent

        return gevent.get_hub().threadpool.apply(fn, args)
    return fn(*args)


def _gevent_patched() -> bool:
    monkey = sys.modules.get("gevent.monkey")
    return bool(monkey and monkey.is_module_patched("threading"))


def _scope(org: str, project: str | None):
    clause = usage_records.c.org == org
    return clause if project is None else clause & (usage_records.c.project == project)


def _read(engine: Engine, statement) -> list[dict]:
    try:
        with engine.connect() as conn:
            return [dict(row) for row in conn.execute(statement).mappings()]
    except SQLAlchemyError:
        raise Unavailable("the database cannot be read") from None


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")


def aggregate(
    engine: Engine, org: str, project: str, *, since_ms: int, until_ms: int, bucket: str = "hour", by: tuple = ()
) -> list[dict]:
    """Calls, errors, tokens and bytes per time bucket (hour/day, UTC) and per `by` columns."""
    width = BUCKETS[bucket]
    start = (usage_records.c.at_ms // width) * width
    keys = [start.label("bucket_ms"), *(usage_records.c[name] for name in by if name in GROUPS)]
    c = usage_records.c
    statement = (
        select(
            *keys,
            func.count().label("calls"),
            func.sum(case((c.status >= 400, 1), else_=0)).label("errors"),
            func.coalesce(func.sum(c.prompt_tokens), 0).label("prompt_tokens"),
            func.coalesce(func.sum(c.completion_tokens), 0).label("completion_tokens"),
            func.coalesce(func.sum(c.total_tokens), 0).label("total_tokens"),
            func.sum(c.bytes_in).label("bytes_in"),
            func.sum(c.bytes_out).label("bytes_out"),
            func.avg(c.duration_ms).label("avg_duration_ms"),
        )
        .where(_scope(org, project), c.at_ms >= since_ms, c.at_ms < until_ms)
        .group_by(*keys)
        .order_by(*keys)
    )
    rows = _read(engine, statement)
    for row in rows:
        row["bucket"] = _iso(row.pop("bucket_ms"))
        row["avg_duration_ms"] = round(float(row["avg_duration_ms"] or 0), 1)
        row["errors"] = int(row["errors"] or 0)
        for name in ("prompt_tokens", "completion_tokens", "total_tokens", "bytes_in", "bytes_out"):
            row[name] = int(row[name] or 0)
    return rows


def _public(row: dict) -> dict:
    return {**row, "time": _iso(row["at_ms"])}


def records(engine: Engine, org: str, project: str, *, cursor: int | None = None, limit: int = 100, **filters) -> dict:
    """Newest first, filtered by any of `GROUPS` and `end_user`, `since_ms`, `until_ms`."""
    limit = max(1, min(limit, PAGE_LIMIT))
    statement = select(usage_records).where(_scope(org, project))
    for name in (*GROUPS, "end_user"):
        if filters.get(name) is not None:
            statement = statement.where(usage_records.c[name] == filters[name])
    if filters.get("since_ms") is not None:
        statement = statement.where(usage_records.c.at_ms >= filters["since_ms"])
    if filters.get("until_ms") is not None:
        statement = statement.where(usage_records.c.at_ms < filters["until_ms"])
    if cursor is not None:
        statement = statement.where(usage_records.c.id < cursor)
    rows = _read(engine, statement.order_by(usage_records.c.id.desc()).limit(limit + 1))
    more = len(rows) > limit
    return {"records": [_public(r) for r in rows[:limit]], "next_cursor": rows[limit - 1]["id"] if more else None}


def tail(engine: Engine, org: str, project: str, since_id: int, limit: int = 200) -> list[dict]:
    """Records written after `since_id`, oldest first (the live SSE stream polls this)."""
    statement = (
        select(usage_records)
        .where(_scope(org, project), usage_records.c.id > since_id)
        .order_by(usage_records.c.id)
        .limit(limit)
    )
    return [_public(r) for r in _read(engine, statement)]


def last_id(engine: Engine, org: str, project: str) -> int:
    """The newest record's id in the project (0 if none): where a live stream starts."""
    rows = _read(engine, select(func.max(usage_records.c.id).label("id")).where(_scope(org, project)))
    return int(rows[0]["id"] or 0)


def _delete(engine: Engine, clause) -> int:
    try:
        with engine.begin() as conn:
            return conn.execute(delete(usage_records).where(clause)).rowcount
    except SQLAlchemyError:
        raise Unavailable("the database cannot be written") from None


def erase_end_user(engine: Engine, org: str, project: str, end_user: str) -> int:
    """GDPR erasure: delete one end-user's usage records in a project; the count deleted."""
    return _delete(engine, _scope(org, project) & (usage_records.c.end_user == end_user))


def delete_scope(engine: Engine, org: str, project: str | None = None) -> int:
    """Delete an org's (or one project's) usage records, as the org or project is deleted."""
    return _delete(engine, _scope(org, project))


def forget_scope(org: str, project: str | None = None) -> None:
    """`delete_scope` on the bound trail's database, inside the org's or project's audited
    deletion. The Vault deletion stands if this fails (logged): retention removes them later."""
    engine = audit.bound_engine()
    try:
        if engine is not None:
            delete_scope(engine, org, project)
    except Unavailable:
        log.warning("usage records of a deleted org or project not deleted: database unavailable")


def run_retention(engine: Engine, holder: str, *, now: int | None = None, every: float = 3600) -> dict | None:
    """Apply every org's retention days to usage and audit records; None if another node ran it.

    The lease is held for `every` seconds and not released: one run per period across every
    worker and node (its holder may run it again sooner).
    """
    if not leases.acquire(engine, "retention", holder, every):
        return None
    now = now_ms() if now is None else now
    custom = settings.all_orgs(engine)
    days = settings.DEFAULTS
    cutoff = now - days["usage_retention_days"] * DAY_MS
    removed = {"usage": _delete(engine, (usage_records.c.at_ms < cutoff) & usage_records.c.org.not_in(custom))}
    for org, values in custom.items():
        cutoff = now - values["usage_retention_days"] * DAY_MS
        removed["usage"] += _delete(engine, (usage_records.c.org == org) & (usage_records.c.at_ms < cutoff))
    removed["audit"] = 0
    for chain in audit_chain.chains(engine):
        keep = custom.get(chain, days)["audit_retention_days"]
        removed["audit"] += audit_chain.trim(engine, chain, now - keep * DAY_MS)
    return removed


class RetentionJob:
    """A worker tick hook: every `every` seconds, `run_retention` in a thread of its own (the
    caller's tick is never delayed); the lease lets one worker of one node do it per period."""

    def __init__(self, engine: Engine, *, every: float = 3600, first: float = 60):
        self.engine = engine
        self.every = every
        self._due = time.monotonic() + first

    def __call__(self) -> None:
        if time.monotonic() < self._due:
            return
        self._due = time.monotonic() + self.every
        threading.Thread(target=self.run, name="retention", daemon=True).start()

    def _apply(self, holder: str) -> dict | None:
        with audit.bound(self.engine, audit.Context(request_id="job:retention")):  # a job's own trail
            return run_retention(self.engine, holder, every=self.every)

    def run(self) -> dict | None:
        holder = f"{socket.gethostname()}:{os.getpid()}"
        try:
            removed = off_the_loop(self._apply, holder)
        except (SQLAlchemyError, Unavailable):
            log.warning("retention not applied: database unavailable (retried next period)")
            return None
        if removed:
            log.info("retention applied", extra={"fields": {"removed": removed}})
        return removed
