"""Browsers: preflight answered without a token, per-project allowed origins, narrower per token."""

from __future__ import annotations

import pytest

from tests.helpers import FAKE_KEY, bearer, create_project, issue_token, put_provider

APP = "https://app.example.com"
ADMIN = "https://admin.example.com"
EVIL = "https://evil.example"
CHAT = "/proxy/openai/v1/chat/completions"


@pytest.fixture
def two_origins(api, upstream):
    """A project allowing APP and ADMIN, with an openai provider on the fake upstream."""
    proj = create_project(api, origins=(APP, ADMIN))
    put_provider(api, proj, "openai", template="openai", api_key=FAKE_KEY, base_url=upstream.url)
    return proj


def _call(client, token: str, origin: str | None):
    headers = {**bearer(token), **({"Origin": origin} if origin else {})}
    return client.post(CHAT, headers=headers, json={"model": "m", "messages": []})


def test_preflight_is_answered_without_a_token(client, provider, upstream):
    response = client.options(
        CHAT,
        headers={
            "Origin": APP,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type, x-stainless-os",
        },
    )
    assert response.status_code == 204
    assert response.headers["Access-Control-Allow-Origin"] == APP
    assert "POST" in response.headers["Access-Control-Allow-Methods"]
    allowed = response.headers["Access-Control-Allow-Headers"].lower()
    assert "authorization" in allowed and "content-type" in allowed
    assert "Origin" in response.headers.get("Vary", "")
    assert response.headers.get("Access-Control-Allow-Credentials") is None
    assert upstream.requests == []


def test_allowed_origin_gets_its_origin_back(client, provider, project_token, upstream):
    response = _call(client, project_token, APP)
    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] == APP
    assert "Origin" in response.headers["Vary"]
    assert len(upstream.requests) == 1
    assert upstream.requests[0].header("origin") is None  # the browser's origin is not forwarded


@pytest.mark.parametrize(
    "origin", [EVIL, "https://app.example.com.evil.example", "http://app.example.com", "null", APP + ":443", APP + "/"]
)
def test_other_origins_are_403_and_nothing_is_forwarded(client, provider, project_token, upstream, origin):
    response = _call(client, project_token, origin)
    assert response.status_code == 403
    assert response.headers.get("Access-Control-Allow-Origin") in (None, "")
    assert upstream.requests == []


def test_requests_without_origin_are_not_browser_requests(client, provider, project_token, upstream):
    response = _call(client, project_token, None)
    assert response.status_code == 200
    assert "Access-Control-Allow-Origin" not in response.headers


def test_per_token_origins_are_narrower(api, client, two_origins, upstream):
    broad = issue_token(api, two_origins)["token"]
    narrow = issue_token(api, two_origins, allowed_origins=[APP])["token"]
    assert _call(client, broad, APP).status_code == 200
    assert _call(client, broad, ADMIN).status_code == 200
    assert _call(client, narrow, APP).status_code == 200
    count = len(upstream.requests)
    assert _call(client, narrow, ADMIN).status_code == 403
    assert _call(client, narrow, EVIL).status_code == 403
    assert len(upstream.requests) == count


def test_changing_project_origins_applies_at_once(api, client, two_origins, upstream):
    token = issue_token(api, two_origins)["token"]
    assert _call(client, token, ADMIN).status_code == 200
    response = api.patch(f"/orgs/{two_origins.org}/projects/{two_origins.slug}", json={"allowed_origins": [APP]})
    assert response.status_code == 200
    count = len(upstream.requests)
    assert _call(client, token, ADMIN).status_code == 403
    assert len(upstream.requests) == count
    assert _call(client, token, APP).status_code == 200
