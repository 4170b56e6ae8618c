"""Usage records: the batch writer (bounded, never blocking), queries, retention, erasure."""

from __future__ import annotations

import time

from sqlalchemy import func, select, text

from app.services import audit, usage
from app.services.usage import DAY_MS, UsageWriter
from app.store import settings
from app.store.db import engine_for, now_ms
from app.store.schema import usage_records
from tests.servers import free_port

HOUR = 3_600_000


def call(**overrides) -> dict:
    fields = {
        "org": "acme", "project": "web", "token_id": "t1", "token_name": "ci", "environment": "production",
        "provider": "openai", "method": "POST", "path": "/v1/chat/completions", "status": 200,
        "duration_ms": 12, "ttfb_ms": 5, "upstream_ms": 10, "bytes_in": 100, "bytes_out": 400,
        "model": "gpt-4o", "prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15,
    }  # fmt: skip
    return {**fields, **overrides}


def count(engine) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(usage_records)).scalar_one()


def test_the_writer_batches_records_into_one_transaction_per_interval(engine):
    writer = UsageWriter(engine, bound=1000, interval=0.2)
    transactions = []
    from sqlalchemy import event

    event.listen(engine, "commit", lambda conn: transactions.append(1))
    writer.start()
    try:
        for _ in range(300):
            writer.record(**call())
        deadline = time.monotonic() + 10
        while count(engine) < 300 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        writer.stop()
    assert count(engine) == 300 and writer.written == 300 and writer.dropped == 0
    assert len(transactions) <= 3  # 300 records, at most a few ticks: not one transaction each


def test_a_dead_database_drops_past_the_bound_with_a_count_and_never_blocks(database_url, tmp_path):
    if database_url.startswith("sqlite"):
        dead = engine_for(f"sqlite:///{tmp_path}")  # a directory: SQLite cannot open it
    else:
        dead = engine_for(f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/test")
    writer = UsageWriter(dead, bound=50, interval=0.05)
    writer.start()
    try:
        started = time.perf_counter()
        for _ in range(200):
            writer.record(**call())
        elapsed = time.perf_counter() - started
        time.sleep(0.3)  # the writer tries (and fails) a few times
        for _ in range(10):
            writer.record(**call())
    finally:
        writer._stop.set()
    assert elapsed < 0.05  # 200 record() calls: no I/O on the caller's path
    assert writer.written == 0
    assert writer.dropped == 160
    assert len(writer._queue) + len(writer._held) == 50


def test_records_held_while_the_database_is_down_are_written_when_it_is_back(engine):
    writer = UsageWriter(engine, bound=100, interval=60)
    with engine.begin() as conn:
        conn.execute(text("ALTER TABLE usage_records RENAME TO usage_records_away"))
    for _ in range(5):
        writer.record(**call())
    assert writer.flush() in (0, 5)  # SQLite: kept (OperationalError); PostgreSQL: refused statement
    with engine.begin() as conn:
        conn.execute(text("ALTER TABLE usage_records_away RENAME TO usage_records"))
    writer.flush()
    assert count(engine) + writer.dropped == 5


def test_values_longer_than_their_column_are_cut_not_refused(engine):
    write(engine, call(path="/v1/" + "p" * 5000, model="m" * 1000))
    (row,) = usage.records(engine, "acme", "web")["records"]
    assert len(row["path"]) == 512 and len(row["model"]) == 200


def test_record_never_raises_and_bad_rows_do_not_block_the_queue(engine):
    writer = UsageWriter(engine, bound=10, interval=60)
    writer.record(org=None, project=None)  # missing required columns
    writer.flush()
    writer.record(**call())
    writer.flush()
    assert count(engine) == 1 and writer.dropped == 1


def write(engine, *rows: dict) -> None:
    writer = UsageWriter(engine, interval=60)
    for row in rows:
        writer.record(**row)
    writer.flush()


def test_aggregates_by_hour_and_by_columns(engine):
    base = (now_ms() // DAY_MS) * DAY_MS
    write(
        engine,
        call(at_ms=base + 10),
        call(at_ms=base + 20, status=429, model="gpt-4o-mini", prompt_tokens=None, total_tokens=None),
        call(at_ms=base + HOUR + 5, provider="anthropic", model="claude"),
        call(at_ms=base + 30, project="other"),
    )
    hourly = usage.aggregate(engine, "acme", "web", since_ms=base, until_ms=base + DAY_MS)
    assert [(r["calls"], r["errors"], r["total_tokens"]) for r in hourly] == [(2, 1, 15), (1, 0, 15)]
    assert hourly[0]["bucket"].endswith("T00:00:00.000+00:00")
    daily = usage.aggregate(
        engine, "acme", "web", since_ms=base, until_ms=base + DAY_MS, bucket="day", by=("provider",)
    )
    assert {(r["provider"], r["calls"]) for r in daily} == {("openai", 2), ("anthropic", 1)}
    by_model = usage.aggregate(
        engine, "acme", "web", since_ms=base, until_ms=base + DAY_MS, bucket="day", by=("model", "status")
    )
    assert {(r["model"], r["status"]) for r in by_model} == {("gpt-4o", 200), ("gpt-4o-mini", 429), ("claude", 200)}


def test_records_filters_pagination_and_tail(engine):
    write(engine, *(call(token_id=f"t{i % 2}", environment="staging" if i == 3 else "production") for i in range(5)))
    page = usage.records(engine, "acme", "web", limit=2)
    rest = usage.records(engine, "acme", "web", limit=10, cursor=page["next_cursor"])
    assert len(page["records"]) == 2 and len(rest["records"]) == 3 and rest["next_cursor"] is None
    assert [r["token_id"] for r in usage.records(engine, "acme", "web", token_id="t1")["records"]] == ["t1", "t1"]
    assert [r["environment"] for r in usage.records(engine, "acme", "web", environment="staging")["records"]] == [
        "staging"
    ]
    first = page["records"][-1]["id"]
    assert [r["id"] for r in usage.tail(engine, "acme", "web", first)] == [r["id"] for r in page["records"][::-1][1:]]
    assert usage.last_id(engine, "acme", "web") == page["records"][0]["id"]
    assert usage.last_id(engine, "acme", "none") == 0


def test_gdpr_erasure_and_scope_deletion(engine):
    write(engine, call(end_user="user-1"), call(end_user="user-1"), call(end_user="user-2"), call(project="other"))
    assert usage.erase_end_user(engine, "acme", "web", "user-1") == 2
    assert [r["end_user"] for r in usage.records(engine, "acme", "web")["records"]] == ["user-2"]
    assert usage.delete_scope(engine, "acme", "web") == 1
    assert usage.delete_scope(engine, "acme") == 1
    assert count(engine) == 0


def test_retention_applies_each_orgs_days_under_one_lease(engine):
    now = now_ms()
    settings.put(engine, "short", usage_retention_days=1, audit_retention_days=1)
    write(
        engine,
        call(org="acme", at_ms=now - 89 * DAY_MS),
        call(org="acme", at_ms=now - 91 * DAY_MS),
        call(org="short", at_ms=now - 2 * DAY_MS),
        call(org="short", at_ms=now),
    )
    audit.record(engine, audit.Actor("cli"), "org.created", audit.Target("short"), outcome="succeeded")
    assert usage.run_retention(engine, "node-a", now=now + DAY_MS // 2) == {"usage": 2, "audit": 0}
    assert usage.run_retention(engine, "node-a", now=now + 2 * DAY_MS) == {"usage": 2, "audit": 1}
    assert audit.verify(engine, "short")["ok"]
    assert usage.run_retention(engine, "node-b") is None  # node-a holds the period's lease


def test_the_retention_job_runs_in_its_own_thread_once_per_period_across_nodes(engine):
    write(engine, call(at_ms=1))  # 1970: past any retention
    job = usage.RetentionJob(engine, first=0)
    job()  # the tick returns at once; the job runs in a thread
    deadline = time.monotonic() + 10
    while count(engine) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert count(engine) == 0
    job()  # not due again for an hour
    assert usage.run_retention(engine, "another-node:1") is None  # this process holds the period


def test_the_proxy_builds_its_rows_in_the_writer_s_column_order():
    from app.proxy.usage import ROW

    assert ROW == usage.COLUMNS


def test_a_queued_value_that_is_not_a_row_is_dropped_not_written(engine):
    writer = UsageWriter(engine, bound=10, interval=60)
    writer.add(("too", "short"))
    writer.record(**call())
    writer.flush()
    assert count(engine) == 1 and writer.dropped == 1
