"""The usage read API: aggregates, records, the live stream, GDPR erasure (audited, fail closed)."""

from __future__ import annotations

import json
import time

import pytest
from sqlalchemy import text

from app.services import audit
from app.services.usage import UsageWriter
from app.store.db import engine_for
from app.store.schema import metadata
from tests.conftest import FAKE_KEY, project_path


@pytest.fixture
def db(app):
    return app.extensions["jetpero.db"]


def add_member(api, org: str, role: str):
    response = api.post(f"/orgs/{org}/members", json={"name": f"{role}-person", "role": role})
    assert response.status_code == 201, response.json
    return api.as_(response.json["token"])


def write(db, project: str, *overrides: dict) -> None:
    org, slug = project.split("/")
    writer = UsageWriter(db, interval=60)
    for extra in overrides:
        writer.record(
            **{
                "org": org,
                "project": slug,
                "provider": "openai",
                "method": "POST",
                "path": "/v1/chat/completions",
                "status": 200,
                "duration_ms": 10,
                "model": "gpt-4o",
                "total_tokens": 7,
                "token_id": "t1",
                **extra,
            }  # fmt: skip
        )
    writer.flush()


def test_viewers_read_aggregates_and_records(api, db, project):
    write(db, project, {}, {"status": 500, "total_tokens": None}, {"provider": "anthropic", "model": "claude"})
    viewer = add_member(api, project.split("/")[0], "viewer")
    base = project_path(project) + "/usage"
    totals = viewer.get(base, query_string={"bucket": "day", "by": ["provider"]})
    assert totals.status_code == 200
    assert {(b["provider"], b["calls"], b["errors"], b["total_tokens"]) for b in totals.json} == {
        ("openai", 2, 1, 7),
        ("anthropic", 1, 0, 7),
    }
    page = viewer.get(base + "/records", query_string={"limit": 2})
    assert len(page.json["records"]) == 2 and page.json["next_cursor"]
    rest = viewer.get(base + "/records", query_string={"cursor": page.json["next_cursor"]})
    assert len(rest.json["records"]) == 1
    assert viewer.get(base + "/records", query_string={"status": 500}).json["records"][0]["status"] == 500
    assert viewer.get(base, query_string={"by": ["token_value"]}).status_code == 422


def test_gdpr_erasure_is_for_admins_and_recorded_in_the_audit_trail(api, db, project):
    org = project.split("/")[0]
    write(db, project, {"end_user": "user-7"}, {"end_user": "user-7"}, {"end_user": "user-8"})
    base = project_path(project) + "/usage"
    assert add_member(api, org, "developer").delete(base, query_string={"end_user": "user-7"}).status_code == 403
    assert api.delete(base).status_code == 422
    erased = api.delete(base, query_string={"end_user": "user-7"})
    assert erased.status_code == 200 and erased.json == {"deleted": 2}
    assert [r["end_user"] for r in api.get(base + "/records").json["records"]] == ["user-8"]
    (done, requested) = audit.query(db, org, action="usage.erased")["records"]
    assert (requested["outcome"], done["outcome"], done["target"]) == ("requested", "succeeded", "user-7")
    assert done["actor_kind"] == "operator"


def test_no_token_or_key_is_in_any_row(api, db, project, project_token, operator_token):
    """After admin calls (audited) and a proxied call, no table holds a token value or the key."""
    assert api.delete(project_path(project) + "/usage", query_string={"end_user": "someone"}).status_code == 200
    with db.connect() as conn:
        dump = " ".join(str(row) for table in metadata.sorted_tables for row in conn.execute(table.select()).all())
    assert dump  # the audit trail holds rows by now
    for secret in (FAKE_KEY, operator_token, project_token, project_token.split(".")[2]):
        assert secret not in dump


def test_erasure_is_refused_when_the_audit_trail_cannot_be_written(api, db, project):
    write(db, project, {"end_user": "user-9"})
    base = project_path(project) + "/usage"
    with db.begin() as conn:
        conn.execute(text("ALTER TABLE audit_chains RENAME TO audit_chains_gone"))
    try:
        refused = api.delete(base, query_string={"end_user": "user-9"})
    finally:
        with db.begin() as conn:
            conn.execute(text("ALTER TABLE audit_chains_gone RENAME TO audit_chains"))
    assert refused.status_code == 503 and refused.headers["Retry-After"]
    assert "audit" in refused.json["message"]
    assert len(api.get(base + "/records", query_string={"end_user": "user-9"}).json["records"]) == 1


def test_the_live_stream_shows_a_call_written_by_another_worker_within_2_seconds(api, app, project):
    org, slug = project.split("/")
    other_worker = engine_for(str(app.extensions["jetpero.db"].url))
    writer = UsageWriter(other_worker, interval=1.0)
    writer.start()
    try:
        response = api.get(project_path(project) + "/usage/stream", buffered=False)
        assert response.status_code == 200 and response.mimetype == "text/event-stream"
        events = iter(response.response)
        assert next(events).startswith(b"retry:")
        sent = time.monotonic()
        writer.record(org=org, project=slug, provider="openai", method="POST", path="/v1/x", status=200, duration_ms=3)
        event = next(events)
        seen = time.monotonic() - sent
        response.close()
    finally:
        writer.stop()
        other_worker.dispose()
    chunk = event.decode()
    assert "event: usage" in chunk and json.loads(chunk.split("data: ", 1)[1])["path"] == "/v1/x"
    assert seen < 2.5, seen  # the writer's second plus the stream's poll (2 s), and a loaded machine
