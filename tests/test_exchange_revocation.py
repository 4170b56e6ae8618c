"""End-user and child tokens are stateless, yet revocable: deleting the IdP revokes every token
minted from its JWTs, revoking a project token revokes its children: at once on the worker
that made the change, within the revocation bound (2 s) on the others."""

from __future__ import annotations

import time

import pytest

from tests.exchange_idp import TestIdp, trust, untrust
from tests.helpers import bearer, parts, project_path

BOUND = 2.0


@pytest.fixture(scope="module")
def idp():
    server = TestIdp()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def second_worker(make_app):
    return make_app(JETPERO_SYNC_INTERVAL=1).test_client()


def _call(client, token: str):
    return client.post("/proxy/openai/v1/chat/completions", headers=bearer(token), json={"model": "m"})


def _refused_within(client, token: str, bound: float) -> float | None:
    start = time.monotonic()
    while time.monotonic() - start < bound + 3:
        if _call(client, token).status_code == 401:
            return time.monotonic() - start
        time.sleep(0.02)
    return None


def _exchange(client, project: str, idp: TestIdp, **claims) -> str:
    response = client.post(f"/exchange/{project}", json={"token": idp.sign(claims)})
    assert response.status_code == 201, response.json
    return response.json["token"]


def _child(client, project: str, parent: str, **body):
    return client.post(f"/exchange/{project}/child", headers=bearer(parent), json={"end_user": "carol", **body})


def test_deleting_the_idp_revokes_its_tokens_here_at_once_and_elsewhere_within_2s(
    app, api, client, project, provider, idp, upstream, second_worker
):
    assert trust(app, api, project, idp).status_code == 200
    token = _exchange(client, project, idp)
    assert _call(client, token).status_code == 200
    assert _call(second_worker, token).status_code == 200  # cached there too
    assert untrust(app, api, project).status_code == 204
    deleted = time.monotonic()
    assert _call(client, token).status_code == 401
    took = _refused_within(second_worker, token, BOUND)
    assert took is not None and time.monotonic() - deleted <= BOUND + 0.5, took
    seen = len(upstream.requests)
    assert _call(second_worker, token).status_code == 401 and len(upstream.requests) == seen


def test_an_idp_created_again_under_the_same_name_does_not_revive_old_tokens(app, api, client, project, provider, idp):
    assert trust(app, api, project, idp).status_code == 200
    old = _exchange(client, project, idp)
    assert untrust(app, api, project).status_code == 204
    assert trust(app, api, project, idp).status_code == 200
    assert _call(client, old).status_code == 401
    assert _call(client, _exchange(client, project, idp)).status_code == 200


def test_narrowing_the_policy_scope_revokes_broader_tokens(app, api, client, project, provider, idp, upstream):
    from tests.helpers import FAKE_KEY, Project, put_provider

    org, slug = project.split("/")
    put_provider(api, Project(org, slug), "other", template="openai", api_key=FAKE_KEY, base_url=upstream.url)
    assert trust(app, api, project, idp).status_code == 200
    broad = _exchange(client, project, idp)
    assert _call(client, broad).status_code == 200
    assert trust(app, api, project, idp, policy={"scope": ["other"]}).status_code == 200
    assert _call(client, broad).status_code == 401


def test_a_child_token_is_narrower_shorter_and_bound_to_an_end_user(api, client, project, provider, upstream):
    parent = api.post(
        f"{project_path(project)}/tokens", json={"name": "backend", "environment": "staging", "expires_in": 600}
    ).json["token"]
    response = _child(client, project, parent, scope=["openai"], expires_in=300)
    assert response.status_code == 201, response.json
    _, claims, _ = parts(response.json["token"])
    _, parent_claims, _ = parts(parent)
    assert claims["end_user"] == "carol" and claims["parent"] == parent_claims["jti"] and claims["env"] == "staging"
    assert claims["scope"] == "openai" and claims["exp"] - claims["iat"] == 300
    assert _call(client, response.json["token"]).status_code == 200
    capped = _child(client, project, parent, expires_in=3600)  # the cap, and the parent's remaining life
    assert capped.status_code == 201 and parts(capped.json["token"])[1]["exp"] <= parent_claims["exp"]


def test_a_child_cannot_widen_its_parent(api, client, project, provider):
    parent = api.post(
        f"{project_path(project)}/tokens",
        json={"name": "narrow", "environment": "staging", "expires_in": 600, "scope": ["openai"]},
    ).json["token"]
    assert _child(client, project, parent, scope=["anthropic"]).status_code == 422
    assert _child(client, project, parent, scope=["*"]).status_code == 422
    assert _child(client, project, parent, expires_in=10**6).status_code == 422
    assert _child(client, project, parent, end_user="").status_code == 422


def test_children_need_a_project_token_of_that_project(app, api, client, project, provider, idp, org):
    from tests.helpers import create_project, issue_token

    assert client.post(f"/exchange/{project}/child", json={"end_user": "x"}).status_code == 401
    assert _child(client, project, "not.a.token").status_code == 401
    other = create_project(api, org)
    put = api.put(f"{other.path}/providers/openai", json={"template": "openai", "api_key": "sk-fake-" + "0" * 40})
    assert put.status_code == 200
    foreign = issue_token(api, other)["token"]
    assert _child(client, project, foreign).status_code == 403
    assert trust(app, api, project, idp).status_code == 200
    end_user = _exchange(client, project, idp)
    assert _child(client, project, end_user).status_code == 403  # no grandchildren


def test_revoking_the_parent_revokes_its_children_here_and_elsewhere(api, client, project, provider, second_worker):
    created = api.post(
        f"{project_path(project)}/tokens", json={"name": "parent", "environment": "staging", "expires_in": 600}
    ).json
    child = _child(client, project, created["token"]).json["token"]
    assert _call(client, child).status_code == 200 and _call(second_worker, child).status_code == 200
    assert api.delete(f"{project_path(project)}/tokens/{created['id']}").status_code == 204
    revoked = time.monotonic()
    assert _call(client, child).status_code == 401
    assert _refused_within(second_worker, child, BOUND) is not None
    assert time.monotonic() - revoked <= BOUND + 0.5
