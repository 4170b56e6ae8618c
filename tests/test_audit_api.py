"""The audit read API: who may read which chain, verify, streamed exports."""

from __future__ import annotations

import csv
import io
import json

import pytest
from sqlalchemy import text

from app.services import audit
from app.services.audit import Actor, Target


def add_member(api, org: str, role: str):
    response = api.post(f"/orgs/{org}/members", json={"name": f"{role}-person", "role": role})
    assert response.status_code == 201, response.json
    return api.as_(response.json["token"])


@pytest.fixture
def db(app):
    return app.extensions["jetpero.db"]


@pytest.fixture
def seeded(db, org):
    for i in range(3):
        audit.record(
            db, Actor("member", "abc", "owner"), "member.added", Target(org, name=f"m{i}"), outcome="succeeded"
        )
    return org


@pytest.mark.parametrize("role, status", [("owner", 200), ("admin", 200), ("developer", 403), ("viewer", 403)])
def test_org_audit_is_for_owners_admins_and_operators(api, seeded, role, status):
    member = add_member(api, seeded, role)
    response = member.get(f"/orgs/{seeded}/audit", query_string={"actor": "abc"})  # the seeded records
    assert response.status_code == status
    if status == 200:
        assert [r["target"] for r in response.json["records"]] == ["m2", "m1", "m0"]
    assert api.get(f"/orgs/{seeded}/audit").status_code == 200


def test_another_orgs_admin_and_anonymous_callers_are_refused(api, seeded):
    other = api.post("/orgs", json={"slug": f"{seeded}-x", "display_name": "Other"})
    assert other.status_code == 201
    outsider = add_member(api, f"{seeded}-x", "owner")
    assert outsider.get(f"/orgs/{seeded}/audit").status_code == 403
    assert api.client.get(f"/api/v1/orgs/{seeded}/audit").status_code == 401
    assert outsider.get("/audit").status_code == 403
    assert outsider.get("/audit/verify").status_code == 403


def test_operator_events_have_their_own_endpoint(api, db):
    audit.record(
        db, Actor("operator", "op", "operator"), "operator_token.minted", Target(name="op-9"), outcome="succeeded"
    )
    response = api.get("/audit", query_string={"action": "operator_token.minted"})
    assert response.status_code == 200 and response.json["records"][0]["target"] == "op-9"
    assert api.get("/audit/verify").json["ok"] is True


def test_verify_names_the_record_edited_in_the_database(api, db, seeded):
    assert api.get(f"/orgs/{seeded}/audit/verify").json == {"chain": seeded, "ok": True, "checked": 3, "broken": None}
    with db.begin() as conn:
        conn.execute(text("UPDATE audit_records SET actor_role = 'viewer' WHERE chain = :c AND seq = 2"), {"c": seeded})
    verdict = api.get(f"/orgs/{seeded}/audit/verify").json
    assert verdict["ok"] is False and verdict["broken"]["seq"] == 2 and verdict["checked"] == 1


def test_exports_are_streamed_jsonl_and_csv(api, seeded):
    jsonl = api.get(f"/orgs/{seeded}/audit", query_string={"format": "jsonl"}, buffered=False)
    assert jsonl.status_code == 200 and jsonl.is_streamed and jsonl.mimetype == "application/x-ndjson"
    assert [json.loads(line)["seq"] for line in jsonl.get_data(as_text=True).splitlines()] == [1, 2, 3]
    table = api.get(f"/orgs/{seeded}/audit", query_string={"format": "csv", "target": "m1"})
    assert "attachment" in table.headers["Content-Disposition"]
    assert [row["target"] for row in csv.DictReader(io.StringIO(table.get_data(as_text=True)))] == ["m1"]


def test_bad_filters_are_422(api, seeded):
    assert api.get(f"/orgs/{seeded}/audit", query_string={"since": "yesterday"}).status_code == 422
    assert api.get(f"/orgs/{seeded}/audit", query_string={"format": "xml"}).status_code == 422


def test_the_audit_verify_command_names_the_broken_record(app, db, seeded):
    runner = app.test_cli_runner()
    ok = runner.invoke(args=["audit-verify", "--org", seeded])
    assert ok.exit_code == 0 and json.loads(ok.output)["checked"] == 3
    with db.begin() as conn:
        conn.execute(text("UPDATE audit_records SET target = 'm9' WHERE chain = :c AND seq = 1"), {"c": seeded})
    broken = runner.invoke(args=["audit-verify", "--org", seeded])
    assert broken.exit_code == 1 and json.loads(broken.output)["broken"]["seq"] == 1
