"""Admin roles: what each role may do, granting and removing members, cross-org isolation."""

from __future__ import annotations

import time

import pytest

from tests.checks import CheckedApi, assert_error
from tests.helpers import FAKE_KEY, every, unique

ROLES = ("viewer", "developer", "admin", "owner")
RANK = {"viewer": 1, "developer": 2, "admin": 3, "owner": 4, "operator": 5}


def add_member(api, org: str, role: str, name: str | None = None) -> tuple[dict, CheckedApi]:
    r = api.post(f"/orgs/{org}/members", json={"name": name or f"{role}-person", "role": role})
    assert r.status_code == 201, r.json
    return r.json, api.as_(r.json["token"])


@pytest.fixture
def team(api, org) -> dict[str, CheckedApi]:
    """One member of each role in `org` (added by the operator), plus the operator."""
    members = {role: add_member(api, org, role)[1] for role in ROLES}
    return {**members, "operator": api}


@pytest.fixture(scope="module")
def other_worker(make_app):
    """A second app on the same Vault: another gunicorn worker, with its own caches."""
    return make_app()


def _actions(who: CheckedApi, org: str, setup: dict) -> list[tuple[str, str, object]]:
    """(least role, label, call) in an order where the destructive calls come last."""
    p = f"/orgs/{org}/projects/abc.co"
    token_body = {"name": "ci", "environment": "staging", "expires_in": 600}
    return [
        ("viewer", "list orgs", lambda: who.get("/orgs")),
        ("viewer", "show org", lambda: who.get(f"/orgs/{org}")),
        ("viewer", "list members", lambda: who.get(f"/orgs/{org}/members")),
        ("viewer", "show member", lambda: who.get(f"/orgs/{org}/members/{setup['victim']}")),
        ("viewer", "list projects", lambda: who.get(f"/orgs/{org}/projects")),
        ("viewer", "show project", lambda: who.get(p)),
        ("viewer", "jwks", lambda: who.get(f"{p}/jwks.json")),
        ("viewer", "list providers", lambda: who.get(f"{p}/providers")),
        ("viewer", "show provider", lambda: who.get(f"{p}/providers/openai")),
        ("viewer", "list tokens", lambda: who.get(f"{p}/tokens")),
        ("viewer", "show token", lambda: who.get(f"{p}/tokens/{setup['token']}")),
        ("developer", "issue token", lambda: who.post(f"{p}/tokens", json=token_body)),
        ("developer", "revoke token", lambda: who.delete(f"{p}/tokens/{setup['token']}")),
        ("admin", "create project", lambda: who.post(f"/orgs/{org}/projects", json={"slug": "new.io"})),
        ("admin", "patch project", lambda: who.patch(p, json={"display_name": "patched"})),
        (
            "admin",
            "put provider",
            lambda: who.put(f"{p}/providers/groq", json={"template": "groq", "api_key": FAKE_KEY}),
        ),
        ("admin", "add viewer", lambda: who.post(f"/orgs/{org}/members", json={"name": "n", "role": "viewer"})),
        ("admin", "remove member", lambda: who.delete(f"/orgs/{org}/members/{setup['victim']}")),
        ("admin", "delete provider", lambda: who.delete(f"{p}/providers/openai")),
        ("admin", "delete project", lambda: who.delete(p)),
        ("operator", "create org", lambda: who.post("/orgs", json={"slug": unique("org")})),
        ("owner", "delete org", lambda: who.delete(f"/orgs/{org}?cascade=true")),
    ]


@pytest.mark.parametrize("role", [*ROLES, "operator"])
def test_role_matrix(api, org, team, role):
    assert api.post(f"/orgs/{org}/projects", json={"slug": "abc.co"}).status_code == 201
    p = f"/orgs/{org}/projects/abc.co"
    assert api.put(f"{p}/providers/openai", json={"template": "openai", "api_key": FAKE_KEY}).status_code == 200
    token = api.post(f"{p}/tokens", json={"name": "t", "environment": "development", "expires_in": 600}).json["id"]
    victim = api.post(f"/orgs/{org}/members", json={"name": "victim", "role": "viewer"}).json["id"]
    setup = {"token": token, "victim": victim}

    who = team[role]
    outcomes = []
    for least, label, call in _actions(who, org, setup):
        r = call()
        allowed = RANK[role] >= RANK[least]
        outcomes.append((label, r.status_code))
        if allowed:
            assert 200 <= r.status_code < 300, (role, label, r.status_code, r.get_json())
        else:
            assert_error(r, 403)
    # A refusal changed nothing: everything the role could not delete is still there.
    if RANK[role] < RANK["admin"]:
        assert api.get(f"{p}/providers/openai").status_code == 200
        assert api.get(f"/orgs/{org}/members/{victim}").status_code == 200
        assert api.get(p).json["display_name"] == "abc.co"
    if RANK[role] < RANK["owner"]:
        assert api.get(f"/orgs/{org}").status_code == 200


def test_members_see_only_their_org(api, org, team):
    other = unique("other")
    assert api.post("/orgs", json={"slug": other}).status_code == 201
    assert api.post(f"/orgs/{other}/projects", json={"slug": "abc.co"}).status_code == 201
    assert {o["slug"] for o in every(api, "/orgs")} >= {org, other}
    op = f"/orgs/{other}/projects/abc.co"
    for role in ROLES:
        who = team[role]
        assert [o["slug"] for o in who.get("/orgs").json] == [org]
        for r in (
            who.get(f"/orgs/{other}"),
            who.get(f"/orgs/{other}/members"),
            who.get(f"/orgs/{other}/projects"),
            who.get(op),
            who.get(f"{op}/providers"),
            who.put(f"{op}/providers/openai", json={"template": "openai", "api_key": FAKE_KEY}),
            who.post(f"{op}/tokens", json={"name": "x", "environment": "production", "expires_in": 600}),
            who.post(f"/orgs/{other}/members", json={"name": "me", "role": "viewer"}),
            who.delete(op),
            who.delete(f"/orgs/{other}?cascade=true"),
            who.get(f"/orgs/{unique('nowhere')}"),  # an unknown org is no different
        ):
            assert_error(r, 403)
    assert api.get(op).status_code == 200
    assert api.get(f"{op}/providers").json == []


@pytest.mark.parametrize("granter", [*ROLES, "operator"])
def test_nobody_grants_a_role_above_their_own(api, org, team, granter):
    who = team[granter]
    for role in ROLES:
        r = who.post(f"/orgs/{org}/members", json={"name": f"by-{granter}", "role": role})
        if RANK[granter] >= RANK["admin"] and RANK[granter] >= RANK[role]:
            assert r.status_code == 201, (granter, role, r.get_json())
            assert r.json["role"] == role and r.json["token"]
        else:
            assert_error(r, 403)
    # `operator` is not an org role: nobody grants it through the members endpoint.
    assert_error(who.post(f"/orgs/{org}/members", json={"name": "x", "role": "operator"}), 422, "role")
    assert_error(who.post(f"/orgs/{org}/members", json={"name": "x", "role": "root"}), 422, "role")
    granted = [m for m in api.get(f"/orgs/{org}/members").json if m["name"] == f"by-{granter}"]
    assert all(RANK[m["role"]] <= RANK[granter] for m in granted)


def test_removing_members_respects_rank(api, org, team):
    owner2, _ = add_member(api, org, "owner", "owner-2")
    admin2, _ = add_member(api, org, "admin", "admin-2")
    dev2, _ = add_member(api, org, "developer", "dev-2")
    assert_error(team["developer"].delete(f"/orgs/{org}/members/{dev2['id']}"), 403)
    assert_error(team["admin"].delete(f"/orgs/{org}/members/{owner2['id']}"), 403)
    assert team["admin"].delete(f"/orgs/{org}/members/{admin2['id']}").status_code == 204
    assert team["owner"].delete(f"/orgs/{org}/members/{owner2['id']}").status_code == 204
    ids = {m["id"] for m in api.get(f"/orgs/{org}/members").json}
    assert dev2["id"] in ids and admin2["id"] not in ids and owner2["id"] not in ids
    assert_error(api.delete(f"/orgs/{org}/members/{admin2['id']}"), 404)
    assert_error(api.delete(f"/orgs/{org}/members/not-a-member-id"), 404)


def test_member_token_is_shown_once(api, org):
    created, _ = add_member(api, org, "developer")
    token = created["token"].encode()
    assert created["expires_at"] > time.time()
    for r in (api.get(f"/orgs/{org}/members"), api.get(f"/orgs/{org}/members/{created['id']}")):
        assert r.status_code == 200
        assert token not in r.get_data() and "token" not in r.get_data(as_text=True)


def test_removed_member_is_refused_at_once_and_on_other_workers(api, org, other_worker):
    created, member = add_member(api, org, "admin")
    elsewhere = member.as_(created["token"])
    elsewhere.client = other_worker.test_client()
    assert member.get(f"/orgs/{org}").status_code == 200
    assert elsewhere.get(f"/orgs/{org}").status_code == 200  # now cached on the other worker too

    assert api.delete(f"/orgs/{org}/members/{created['id']}").status_code == 204
    assert_error(member.get(f"/orgs/{org}"), 401)  # at once on the worker that removed it
    deadline = time.monotonic() + 2.5
    while elsewhere.get(f"/orgs/{org}").status_code != 401:
        assert time.monotonic() < deadline, "the other worker still accepts a removed member"
        time.sleep(0.1)
    assert_error(member.post(f"/orgs/{org}/members", json={"name": "back", "role": "viewer"}), 401)


def test_tokens_of_a_deleted_org_are_refused(api, org, team):
    assert team["owner"].get(f"/orgs/{org}").status_code == 200
    assert team["owner"].delete(f"/orgs/{org}").status_code == 204
    for role in ROLES:
        assert_error(team[role].get(f"/orgs/{org}"), 401)
        assert_error(team[role].get("/orgs"), 401)
    # The same slug, recreated, does not bring the old members back.
    assert api.post("/orgs", json={"slug": org}).status_code == 201
    for role in ROLES:
        assert_error(team[role].get(f"/orgs/{org}"), 401)


def test_project_token_is_not_an_admin_token(api, project_token, org):
    assert_error(api.as_(project_token).get(f"/orgs/{org}"), 401)
