"""The audit trail: recorded before the change (fail closed), hash-chained, queryable, exported."""

from __future__ import annotations

import csv
import io
import json
import logging
import subprocess
import sys
import threading

import pytest
from sqlalchemy import text

from app.services import audit
from app.services.audit import Actor, AuditUnavailable, Context, Target
from app.store import audit_chain

ALICE = Actor("member", "a1b2c3d4", "owner")
OPERATOR = Actor("operator", "op-1", "operator")
CONTEXT = Context(request_id="req-1", client_ip="203.0.113.7", user_agent="pytest")


def test_a_change_records_requested_then_succeeded(engine):
    ran = []
    with audit.change(engine, ALICE, "provider.set", Target("acme", "web", "openai"), CONTEXT) as entry:
        ran.append(entry.id)
    records = audit.query(engine, "acme")["records"]
    assert [r["outcome"] for r in records] == ["succeeded", "requested"]  # newest first
    assert {r["entry"] for r in records} == {ran[0]}
    first = records[1]
    assert (first["actor_kind"], first["actor_id"], first["actor_role"]) == ("member", "a1b2c3d4", "owner")
    assert (first["org"], first["project"], first["target"]) == ("acme", "web", "openai")
    assert (first["request_id"], first["client_ip"], first["user_agent"]) == ("req-1", "203.0.113.7", "pytest")


def test_a_failed_change_records_the_error_kind_and_reraises(engine):
    with pytest.raises(KeyError), audit.change(engine, ALICE, "project.deleted", Target("acme", "web")):
        raise KeyError("secret-looking text that must not be stored")
    newest = audit.query(engine, "acme")["records"][0]
    assert (newest["outcome"], newest["error"]) == ("failed", "KeyError")
    assert "secret-looking" not in json.dumps(audit.query(engine, "acme"))


def test_the_body_never_runs_when_the_record_cannot_be_written(engine):
    audit.record(engine, ALICE, "org.created", Target("acme"), outcome="succeeded")
    with engine.begin() as conn:  # break the database mid-run: the chain heads are gone
        conn.execute(text("ALTER TABLE audit_chains RENAME TO audit_chains_gone"))
    ran = []
    with pytest.raises(AuditUnavailable):
        with audit.change(engine, ALICE, "provider.deleted", Target("acme", "web", "openai")):
            ran.append(True)
    assert ran == []


def test_services_record_on_the_trail_bound_to_their_unit_of_work(engine):
    with audit.bound(engine, CONTEXT):
        with audit.changing(ALICE, "project.created", Target("bound", "web")):
            pass
        audit.refused(Actor("anonymous"), "auth.refused", Target("bound"), reason="expired token")
    records = audit.query(engine, "bound")["records"]
    assert [r["outcome"] for r in records] == ["refused", "succeeded", "requested"]
    assert {r["request_id"] for r in records} == {"req-1"}


def test_with_no_trail_bound_the_change_is_refused_and_never_runs(engine):
    ran = []
    with pytest.raises(AuditUnavailable), audit.changing(ALICE, "project.created", Target("unbound")):
        ran.append(True)
    audit.refused(ALICE, "auth.refused", Target("unbound"), reason="nothing bound")  # never raises
    assert ran == [] and audit.query(engine, "unbound")["records"] == []


def test_a_dead_database_refuses_the_change(tmp_path):
    from app.store.db import engine_for

    dead = engine_for(f"sqlite:///{tmp_path}")  # a directory: SQLite cannot open it
    ran = []
    with pytest.raises(AuditUnavailable):
        with audit.change(dead, ALICE, "token.issued", Target("acme", "web", "tok1")):
            ran.append(True)
    assert ran == []


def test_values_longer_than_their_column_are_cut_not_refused(engine):
    long = Context(request_id="r" * 500, user_agent="u" * 5000)
    audit.record(engine, ALICE, "provider.set", Target("acme", "web", "n" * 900), long, outcome="succeeded")
    (row,) = audit.query(engine, "acme")["records"]
    assert (len(row["request_id"]), len(row["user_agent"]), len(row["target"])) == (64, 256, 200)
    assert audit.verify(engine, "acme")["ok"]


def test_security_events_are_one_shot_records_that_never_raise(engine, tmp_path):
    audit.event(engine, Actor("anonymous"), "auth.refused", Target("acme"), CONTEXT, reason="expired token")
    (only,) = audit.query(engine, "acme")["records"]
    assert (only["outcome"], only["detail"], only["action"]) == ("refused", "expired token", "auth.refused")
    from app.store.db import engine_for

    audit.event(engine_for(f"sqlite:///{tmp_path}"), Actor("anonymous"), "auth.refused", Target(), reason="x")


def test_each_record_is_a_json_log_line_on_jetpero_audit(engine, caplog):
    with caplog.at_level(logging.INFO, logger="jetpero.audit"):
        audit.record(engine, OPERATOR, "operator_token.minted", Target(name="op-2"), outcome="succeeded")
    (line,) = [r for r in caplog.records if r.name == "jetpero.audit"]
    assert line.fields["audit"]["action"] == "operator_token.minted"
    assert line.fields["audit"]["chain"] == audit.OPERATOR_CHAIN


def test_orgs_and_operator_events_have_separate_valid_chains(engine):
    for i in range(3):
        audit.record(engine, ALICE, "member.added", Target("acme", name=f"m{i}"), outcome="succeeded", detail="viewer")
        audit.record(engine, OPERATOR, "org.created", Target(name=f"org{i}"), outcome="succeeded")
    assert audit.verify(engine, "acme") == {"chain": "acme", "ok": True, "checked": 3, "broken": None}
    assert audit.verify(engine, audit.OPERATOR_CHAIN)["checked"] == 3
    assert audit.query(engine, "other")["records"] == []


@pytest.mark.parametrize(
    "tamper, reason",
    [
        ("UPDATE audit_records SET detail = 'owner' WHERE chain = 'acme' AND seq = 3", "edited"),
        ("DELETE FROM audit_records WHERE chain = 'acme' AND seq = 3", "missing"),
    ],
)
def test_editing_or_removing_a_row_breaks_verify_at_that_record(engine, tamper, reason):
    for i in range(5):
        audit.record(engine, ALICE, "member.added", Target("acme", name=f"m{i}"), outcome="succeeded", detail="viewer")
    with engine.begin() as conn:
        conn.execute(text(tamper))
    result = audit.verify(engine, "acme")
    assert result["ok"] is False
    assert result["broken"]["seq"] == 3 and reason in result["broken"]["reason"]
    assert result["checked"] == 2


def test_removing_the_newest_records_breaks_verify(engine):
    for i in range(3):
        audit.record(engine, ALICE, "token.revoked", Target("acme", "web", f"t{i}"), outcome="succeeded")
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM audit_records WHERE chain = 'acme' AND seq = 3"))
    result = audit.verify(engine, "acme")
    assert result["ok"] is False and result["broken"]["seq"] == 3


def test_concurrent_appends_from_threads_keep_one_valid_chain(engine):
    def append(n: int) -> None:
        for i in range(10):
            audit.record(engine, ALICE, "token.issued", Target("acme", "web", f"{n}-{i}"), outcome="succeeded")

    threads = [threading.Thread(target=append, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert audit.verify(engine, "acme") == {"chain": "acme", "ok": True, "checked": 40, "broken": None}


def test_concurrent_appends_from_processes_keep_one_valid_chain(engine, database_url):
    code = (
        "import sys; from app.store.db import engine_for; from app.services import audit;"
        "e = engine_for(sys.argv[1]);"
        "[audit.record(e, audit.Actor('cli', 'p'), 'org.updated', audit.Target('acme'), outcome='succeeded')"
        " for _ in range(10)]"
    )
    workers = [subprocess.Popen([sys.executable, "-c", code, database_url]) for _ in range(3)]
    assert [w.wait(120) for w in workers] == [0, 0, 0]
    assert audit.verify(engine, "acme")["checked"] == 30
    assert audit.verify(engine, "acme")["ok"]


def test_query_filters_and_cursor_pagination(engine):
    for i in range(7):
        actor = ALICE if i % 2 else OPERATOR
        audit.record(engine, actor, "project.created", Target("acme", f"p{i}"), outcome="succeeded")
    first = audit.query(engine, "acme", limit=3)
    second = audit.query(engine, "acme", limit=3, cursor=first["next_cursor"])
    third = audit.query(engine, "acme", limit=3, cursor=second["next_cursor"])
    projects = [r["project"] for page in (first, second, third) for r in page["records"]]
    assert projects == [f"p{i}" for i in reversed(range(7))] and third["next_cursor"] is None
    assert [r["project"] for r in audit.query(engine, "acme", actor="a1b2c3d4")["records"]] == ["p5", "p3", "p1"]
    assert [r["project"] for r in audit.query(engine, "acme", target="p4")["records"]] == ["p4"]
    assert audit.query(engine, "acme", action="org.deleted")["records"] == []
    middle = audit.query(engine, "acme", target="p3")["records"][0]["at_ms"]
    assert {r["project"] for r in audit.query(engine, "acme", since_ms=middle)["records"]} >= {"p3", "p6"}
    assert "p3" not in {r["project"] for r in audit.query(engine, "acme", until_ms=middle)["records"]}


def test_exports_stream_every_record_as_jsonl_and_csv(engine, monkeypatch):
    monkeypatch.setattr(audit, "EXPORT_BATCH", 4)  # several batches
    agent = Context(user_agent='=HYPERLINK("http://evil")')
    for i in range(10):
        audit.record(engine, ALICE, "member.removed", Target("acme", name=f"m{i}"), agent, outcome="succeeded")
    lines = audit.export_jsonl(engine, "acme")
    assert not isinstance(lines, list)
    rows = [json.loads(line) for line in lines]
    assert [r["seq"] for r in rows] == list(range(1, 11))
    table = list(csv.DictReader(io.StringIO("".join(audit.export_csv(engine, "acme")))))
    assert [r["target"] for r in table] == [f"m{i}" for i in range(10)]
    assert table[0]["user_agent"].startswith("'=")  # no spreadsheet formula


def test_retention_trims_a_chain_that_still_verifies(engine):
    for _ in range(4):
        audit.record(engine, ALICE, "org.updated", Target("acme"), outcome="succeeded")
    with engine.begin() as conn:
        conn.execute(text("UPDATE audit_records SET at_ms = 0 WHERE seq <= 2"))
    with engine.begin() as conn:  # the old records' hashes must be recomputed after the time edit
        rows = conn.execute(text("SELECT * FROM audit_records ORDER BY seq")).mappings().all()
    prev = audit_chain.GENESIS
    with engine.begin() as conn:
        for row in rows:
            fixed = {**row, "prev_hash": prev}
            fixed["hash"] = audit.digest(fixed)
            conn.execute(
                text("UPDATE audit_records SET prev_hash = :p, hash = :h WHERE id = :i"),
                {"p": prev, "h": fixed["hash"], "i": row["id"]},
            )
            prev = fixed["hash"]
        conn.execute(text("UPDATE audit_chains SET hash = :h"), {"h": prev})
    assert audit.verify(engine, "acme")["ok"]
    assert audit_chain.trim(engine, "acme", before_ms=1) == 2
    assert audit.verify(engine, "acme") == {"chain": "acme", "ok": True, "checked": 2, "broken": None}
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM audit_records WHERE seq = 3"))
    assert audit.verify(engine, "acme")["broken"]["seq"] == 3
