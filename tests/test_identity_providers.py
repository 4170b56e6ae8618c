"""The admin API of identity providers: validation, roles, audit, listing."""

from __future__ import annotations

import pytest

from app.services import audit
from tests.checks import assert_error
from tests.exchange_idp import AUDIENCE, TestIdp, trust, untrust
from tests.helpers import project_path
from tests.test_roles import add_member


@pytest.fixture(scope="module")
def idp():
    server = TestIdp()
    yield server
    server.stop()


def test_put_show_list_delete(app, api, project, provider, idp):
    created = trust(app, api, project, idp, policy={"scope": ["openai"], "ttl": 300})
    assert created.status_code == 200, created.json
    body = created.json
    assert body["name"] == "test-idp" and body["user_claim"] == "sub" and body["audience"] == AUDIENCE
    assert body["policy"] == {"scope": ["openai"], "ttl": 300, "environment": "production"}
    assert "id" not in body
    path = f"{project_path(project)}/identity-providers"
    assert api.get(f"{path}/test-idp").json == body
    assert [item["name"] for item in api.get(path).json] == ["test-idp"]
    assert untrust(app, api, project).status_code == 204
    assert api.get(f"{path}/test-idp").status_code == 404
    assert untrust(app, api, project).status_code == 404


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"algorithms": ["HS256"]}, "algorithms"),
        ({"algorithms": ["none"]}, "algorithms"),
        ({"jwks_url": "file:///etc/passwd"}, None),
        ({"jwks_url": "https://user:pw@idp.example/jwks"}, None),
        ({"jwks_url": "http://idp.example/jwks"}, None),
        ({"policy": {"ttl": 999999}}, None),
        ({"policy": {"scope": ["unknown-provider"]}}, None),
        ({"user_claim": "a b"}, None),
        ({"issuer": ""}, "issuer"),
    ],
)
def test_invalid_settings_are_refused_with_a_reason(app, api, project, provider, idp, body, field):
    response = trust(app, api, project, idp, **body)
    assert_error(response, 422, field)


@pytest.mark.parametrize("url", ["http://127.0.0.1:9/jwks", "https://169.254.169.254/jwks", "https://[::1]/jwks"])
def test_private_jwks_urls_are_refused_unless_allowed(make_app, operator_token, idp, url):
    from tests.checks import CheckedApi
    from tests.helpers import create_project

    strict = make_app(JETPERO_ALLOW_PRIVATE_UPSTREAMS="false")
    api = CheckedApi(strict.test_client(), operator_token)
    project = create_project(api)
    response = trust(strict, api, project.namespace, idp, jwks_url=url)
    assert_error(response, 422)
    assert "loopback, private or link-local" in response.json["message"]


def test_two_idps_cannot_share_an_issuer(app, api, project, provider, idp):
    assert trust(app, api, project, idp, name="first").status_code == 200
    assert_error(trust(app, api, project, idp, name="second"), 422)


def test_only_admins_change_identity_providers_viewers_read_them(app, api, org, project, provider, idp):
    _, developer = add_member(api, org, "developer")
    _, viewer = add_member(api, org, "viewer")
    assert trust(app, developer, project, idp).status_code == 403
    assert trust(app, api, project, idp).status_code == 200
    assert viewer.get(f"{project_path(project)}/identity-providers").status_code == 200
    assert untrust(app, viewer, project).status_code == 403


def test_changes_are_on_the_audit_trail_and_refused_without_one(app, api, org, project, provider, idp):
    assert trust(app, api, project, idp).status_code == 200
    assert untrust(app, api, project).status_code == 204
    records = audit.query(app.extensions["jetpero.db"], org)["records"]
    seen = [(r["action"], r["outcome"]) for r in records if r["action"].startswith("identity_provider.")]
    assert ("identity_provider.set", "succeeded") in seen and ("identity_provider.deleted", "succeeded") in seen
    org_, slug = project.split("/")
    unbound = api.put(
        f"/orgs/{org_}/projects/{slug}/identity-providers/unaudited",
        json={"issuer": "https://x.example/", "jwks_url": f"{idp.url}/jwks", "audience": AUDIENCE},
    )
    if unbound.status_code == 503:  # no trail bound by the admin API yet: nothing was changed
        assert api.get(f"/orgs/{org_}/projects/{slug}/identity-providers/unaudited").status_code == 404
    else:  # the admin API binds the trail itself
        assert unbound.status_code == 200
