"""Every change made through the admin API or the CLI is on the audit trail, with the request's
id, client IP and user agent; a change whose record cannot be written is not made (503, nothing
changed in Vault); refused admin calls are security events, bounded per client IP."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from app.admin import auth
from app.services import audit, projects, provider_keys, usage
from app.services.usage import UsageWriter
from tests.checks import CheckedApi, assert_nothing_stored
from tests.helpers import FAKE_KEY, project_path


def records(app, chain: str, **filters) -> list[dict]:
    return audit.query(app.extensions["jetpero.db"], chain, limit=500, **filters)["records"]


def outcomes(app, chain: str, action: str) -> list[str]:
    return [r["outcome"] for r in reversed(records(app, chain, action=action))]


def add_member(api, org: str, role: str) -> tuple[str, CheckedApi]:
    response = api.post(f"/orgs/{org}/members", json={"name": f"{role}-person", "role": role})
    assert response.status_code == 201, response.json
    return response.json["id"], api.as_(response.json["token"])


def test_each_change_through_the_api_is_recorded_with_its_request(app, api, org):
    created = api.post(f"/orgs/{org}/projects", json={"slug": "web"}, headers={"User-Agent": "audit-test/1"})
    assert created.status_code == 201
    base = project_path(f"{org}/web")
    assert api.patch(f"/orgs/{org}/projects/web", json={"display_name": "Web"}).status_code == 200
    assert api.put(f"{base}/providers/openai", json={"template": "openai", "api_key": FAKE_KEY}).status_code == 200
    token = api.post(f"{base}/tokens", json={"name": "ci", "environment": "development", "expires_in": 60}).json
    assert api.delete(f"{base}/tokens/{token['id']}").status_code in (200, 204)
    member_id, _ = add_member(api, org, "developer")
    assert api.delete(f"/orgs/{org}/members/{member_id}").status_code == 204
    assert api.delete(f"{base}/providers/openai").status_code == 204
    assert api.delete(f"/orgs/{org}/projects/web").status_code == 204

    for action in (
        "project.created", "project.updated", "provider.set", "token.issued", "token.revoked",
        "member.added", "member.removed", "provider.deleted", "project.deleted",
    ):  # fmt: skip
        assert outcomes(app, org, action) == ["requested", "succeeded"], action
    first = records(app, org, action="project.created")[-1]
    assert first["request_id"] == created.headers["X-Request-Id"]
    assert (first["client_ip"], first["user_agent"]) == ("127.0.0.1", "audit-test/1")
    assert (first["actor_kind"], first["actor_role"], first["project"]) == ("operator", "operator", "web")
    assert records(app, org, action="token.issued")[0]["target"] == token["id"]
    assert records(app, org, action="member.removed")[-1]["detail"] == "role=developer"
    assert outcomes(app, audit.OPERATOR_CHAIN, "org.created")[-2:] == ["requested", "succeeded"]
    assert records(app, audit.OPERATOR_CHAIN, action="org.created")[0]["target"] == org


def test_a_cascade_records_the_org_and_each_project_deleted(app, api, org, project):
    assert api.delete(f"/orgs/{org}", query_string={"cascade": "true"}).status_code == 204
    assert outcomes(app, org, "project.deleted") == ["requested", "succeeded"]
    deleted = records(app, audit.OPERATOR_CHAIN, action="org.deleted", target=org)
    assert [r["outcome"] for r in deleted] == ["succeeded", "requested"]
    assert deleted[-1]["detail"] == "cascade: 1 projects"


def test_operator_tokens_minted_on_the_command_line_are_recorded(app):
    result = app.test_cli_runner().invoke(args=["operator-token", "--name", "night-shift"])
    assert result.exit_code == 0
    minted = records(app, audit.OPERATOR_CHAIN, action="operator_token.minted")
    assert minted[0]["request_id"] == "cli:operator-token" and minted[0]["actor_kind"] == "cli"
    assert minted[1]["detail"] == "name=night-shift"
    assert result.output.strip() not in str(minted)


@pytest.fixture
def own_db(make_app, tmp_path, operator_token):
    """An app on a database of its own (the session's Vault), to break without harming others."""
    built = make_app(JETPERO_DATABASE_URL=f"sqlite:///{tmp_path}/audit.db")
    return built, CheckedApi(built.test_client(), operator_token)


def break_trail(app) -> None:
    with app.extensions["jetpero.db"].begin() as conn:
        conn.execute(text("ALTER TABLE audit_chains RENAME TO audit_chains_gone"))


def test_no_change_is_made_in_vault_when_its_record_cannot_be_written(own_db, org, project):
    built, api = own_db
    slug = project.split("/")[1]
    assert api.get(f"/orgs/{org}").status_code == 200  # the database works until here
    break_trail(built)
    vault = built.extensions["jetpero"].vault
    refused = api.put(f"{project_path(project)}/providers/openai", json={"template": "openai", "api_key": FAKE_KEY})
    assert refused.status_code == 503 and "audit" in refused.json["message"]
    assert provider_keys.names(vault, org, slug) == []  # nothing written in Vault
    assert api.post(f"/orgs/{org}/projects", json={"slug": "never"}).status_code == 503
    assert projects.slugs(vault, org) == [slug]
    assert api.post("/orgs", json={"slug": f"{org}-never"}).status_code == 503
    assert api.get(f"/orgs/{org}-never").status_code == 404
    assert api.delete(f"/orgs/{org}/projects/{slug}").status_code == 503
    assert projects.slugs(vault, org) == [slug]
    minted = built.test_cli_runner().invoke(args=["operator-token"])
    assert minted.exit_code == 1 and "audit trail" in minted.output


def test_refused_admin_calls_are_recorded_with_their_reason_kept_server_side(app, api, org):
    _, developer = add_member(api, org, "developer")
    anonymous = api.client.get(f"/api/v1/orgs/{org}/members", headers={"Authorization": "Bearer junk.junk.junk"})
    forbidden = developer.post(f"/orgs/{org}/members", json={"name": "x", "role": "viewer"})
    assert (anonymous.status_code, forbidden.status_code) == (401, 403)
    refused = {r["action"]: r for r in records(app, org) if r["outcome"] == "refused"}
    detail = refused["auth.refused"]["detail"]
    assert detail.startswith("admin token refused: ") and "junk" not in detail
    assert refused["auth.refused"]["actor_kind"] == "anonymous"
    assert refused["auth.refused"]["request_id"] == anonymous.headers["X-Request-Id"]
    assert detail.split(": ", 1)[1] not in anonymous.get_data(as_text=True)  # the reason stays server-side
    assert refused["access.refused"]["actor_role"] == "developer"
    assert refused["access.refused"]["detail"].startswith("POST /api/v1/orgs/<slug:org>/members")


def test_an_anonymous_flood_is_counted_not_recorded(app, api, org, monkeypatch):
    monkeypatch.setattr(auth, "budget", auth.RefusalBudget(per_ip=3, total=100))
    before = auth.metrics.REFUSALS_UNRECORDED._value.get()
    for _ in range(20):
        assert api.client.get(f"/api/v1/orgs/{org}", headers={"Authorization": "Bearer junk"}).status_code == 401
    assert len([r for r in records(app, org, action="auth.refused")]) == 3
    assert auth.metrics.REFUSALS_UNRECORDED._value.get() - before == 17


def test_retention_settings_are_for_admins_and_audited(app, api, org):
    _, developer = add_member(api, org, "developer")
    assert api.get(f"/orgs/{org}/settings").json == {"usage_retention_days": 90, "audit_retention_days": 365}
    assert developer.get(f"/orgs/{org}/settings").status_code == 403
    assert developer.put(f"/orgs/{org}/settings", json={"usage_retention_days": 1}).status_code == 403
    assert api.put(f"/orgs/{org}/settings", json={"usage_retention_days": 0}).status_code == 422
    changed = api.put(f"/orgs/{org}/settings", json={"usage_retention_days": 30})
    assert changed.json == {"usage_retention_days": 30, "audit_retention_days": 365}
    assert api.get(f"/orgs/{org}/settings").json["usage_retention_days"] == 30
    assert api.get("/orgs/no-such-org/settings").status_code == 404
    assert records(app, org, action="settings.set")[-1]["detail"] == "usage_retention_days=30"


def _write_usage(app, org: str, slug: str) -> None:
    writer = UsageWriter(app.extensions["jetpero.db"], interval=60)
    writer.record(org=org, project=slug, provider="openai", method="POST", path="/v1/x", status=200, duration_ms=1)
    writer.flush()


def test_deleting_a_project_or_an_org_deletes_its_usage_records(app, api, org, project):
    db, slug = app.extensions["jetpero.db"], project.split("/")[1]
    assert api.post(f"/orgs/{org}/projects", json={"slug": "other"}).status_code == 201
    _write_usage(app, org, slug)
    _write_usage(app, org, "other")
    assert api.delete(f"/orgs/{org}/projects/{slug}").status_code == 204
    assert usage.records(db, org, slug)["records"] == []
    assert len(usage.records(db, org, "other")["records"]) == 1
    assert api.delete(f"/orgs/{org}", query_string={"cascade": "true"}).status_code == 204
    assert usage.records(db, org, "other")["records"] == []
    assert records(app, org, action="project.deleted")  # the audit records stay (retention)


def test_the_end_of_session_check_finds_a_token_in_any_row(engine, operator_token):
    """What the `app` fixture's teardown runs over the session's database catches a leak."""
    audit.record(engine, audit.Actor("operator", "op"), "leak.test", audit.Target("leaky"), outcome="succeeded")
    assert_nothing_stored(engine)
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE audit_records SET user_agent = :ua"), {"ua": "curl " + operator_token.rsplit(".", 1)[1]}
        )
    with pytest.raises(AssertionError, match="token value"):
        assert_nothing_stored(engine)
    with engine.begin() as conn:
        conn.execute(text("UPDATE audit_records SET user_agent = NULL"))
