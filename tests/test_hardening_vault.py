"""Issue 14, item 2: Vault is no amplifier. However many forged tokens an anonymous caller sends,
whatever `kid` they name, a worker makes only a small bounded number of Vault calls, and real
tokens keep working. Vault calls are counted by wrapping the worker's own `Vault._run`."""

from __future__ import annotations

import time

import pytest

from app.rules import tokens
from tests.helpers import assert_uniform_401, b64, b64json, bearer

FLOOD = 100  # forged tokens of each kind
CALLS_PER_MISS = 3  # Vault calls one load of an unknown project's key set makes, at most


@pytest.fixture
def counted(make_app):
    """A fresh worker (empty caches) whose Vault calls are counted."""
    app = make_app(JETPERO_SYNC_INTERVAL=30)  # the poller's own calls out of the way
    vault = app.extensions["jetpero"].vault
    calls = []
    run = vault._run

    def counting(identity, make, fn):
        calls.append(identity)
        return run(identity, make, fn)

    vault._run = counting
    return app, calls


def _forged(kid: str) -> str:
    header = b64json({"alg": tokens.ALGORITHM, "kid": kid, "typ": tokens.TYP})
    claims = b64json({"sub": "x", "exp": int(time.time()) + 600})
    return f"{header}.{claims}.{b64(bytes(64))}"


def test_a_flood_of_forged_kids_costs_a_small_bounded_number_of_vault_calls(counted, project, provider, project_token):
    app, calls = counted
    client = app.test_client()
    org, slug = project.split("/")
    assert client.get("/proxy/openai/v1/models", headers=bearer(project_token)).status_code == 200
    before = len(calls)
    kids = (
        [f"ghost-org-{i}/p/1" for i in range(FLOOD)]  # unknown orgs
        + [f"{org}/ghost-{i}/1" for i in range(FLOOD)]  # unknown projects of a real org
        + [f"{org}/{slug}/{i + 2}" for i in range(FLOOD)]  # unknown versions of a real project's key
        + [f"{org}/{slug}/1"] * FLOOD  # the real key, a forged signature
        + ["ghost-org-0/p/1"] * FLOOD  # the same unknown kid again and again
    )
    statuses, started = set(), time.monotonic()
    for kid in kids:
        response = client.get("/proxy/openai/v1/models", headers=bearer(_forged(kid)))
        statuses.add(response.status_code)
        if response.status_code == 401:
            assert_uniform_401(response)
        else:
            assert response.status_code == 503 and response.headers["Retry-After"]
    assert statuses <= {401, 503}
    flood_calls, elapsed = len(calls) - before, time.monotonic() - started
    # At most the worker's miss budget (a burst, then a small rate), each miss a few Vault calls:
    # however many tokens, not one call per token.
    budget = app.extensions["jetpero"].budget
    bound = CALLS_PER_MISS * (budget.total_burst + budget.total_rate * elapsed)
    assert flood_calls <= bound, f"{len(kids)} forged tokens made {flood_calls} Vault calls in {elapsed:.1f} s"
    assert flood_calls < len(kids) / 10
    # the real token still works, without Vault (its key and record are cached)
    assert client.get("/proxy/openai/v1/models", headers=bearer(project_token)).status_code == 200


def test_admin_tokens_with_forged_kids_cost_a_bounded_number_of_vault_calls(counted):
    app, calls = counted
    client = app.test_client()
    before = len(calls)
    for i in range(FLOOD):
        response = client.get("/api/v1/orgs", headers=bearer(_forged(f"admin/{i + 50}")))
        assert response.status_code in (401, 503)
    assert len(calls) - before <= 15


def test_a_kid_remembered_absent_is_found_once_its_project_appears(counted, api, org):
    app, calls = counted
    client = app.test_client()
    slug = "later-proj"
    kid_token = _forged(f"{org}/{slug}/1")
    assert_uniform_401(client.get("/proxy/openai/v1/models", headers=bearer(kid_token)))
    worker = app.extensions["jetpero"]
    assert (org, slug) in worker.absent
    assert api.post(f"/orgs/{org}/projects", json={"slug": slug}).status_code == 201
    worker.sync_once()  # the change feed names the new project
    assert (org, slug) not in worker.absent


def test_a_revoked_token_costs_vault_once_not_on_every_use(counted, api, project, provider):
    app, calls = counted
    client = app.test_client()
    org, slug = project.split("/")
    issued = api.post(
        f"/orgs/{org}/projects/{slug}/tokens", json={"name": "r", "environment": "development", "expires_in": 600}
    ).json
    assert api.delete(f"/orgs/{org}/projects/{slug}/tokens/{issued['id']}").status_code == 204
    assert_uniform_401(client.get("/proxy/openai/v1/models", headers=bearer(issued["token"])))
    before = len(calls)
    for _ in range(50):
        assert_uniform_401(client.get("/proxy/openai/v1/models", headers=bearer(issued["token"])))
    assert len(calls) == before
