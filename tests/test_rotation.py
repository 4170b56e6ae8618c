"""Provider-key rotation and history against the real OpenBao: versions, rotate (verified or
not), restore, delete keeping history, purge, every worker on the new key, a stream across a
rotation, concurrent rotate + PUT, the rotation policy, the key-age gauge and the audit trail."""

from __future__ import annotations

import time

import pytest

from app.observability import provider_key_ages
from app.services import audit, provider_keys
from app.services.actor import COMMAND_LINE
from app.services.rotation_job import run_all
from app.vault.errors import Conflict
from tests.checks import assert_error
from tests.helpers import FAKE_KEY, bearer, project_path

NEW_KEY = "sk-fake-TESTKEY-1111111111111111-wxyz"
BAD_KEY = "sk-fake-TESTKEY-2222222222222222-nope"
CHAT = "/proxy/openai/v1/chat/completions"
BODY = {"model": "m", "messages": []}


@pytest.fixture(autouse=True)
def trail(app):
    """The audit trail bound around each test (the admin request cycle binds it once wired)."""
    with audit.bound(app.extensions["jetpero.db"]):
        yield


def _providers(project: str) -> str:
    return f"{project_path(project)}/providers"


def _key_seen(client, token: str, upstream, path: str = CHAT) -> str:
    response = client.post(path, json=BODY, headers=bearer(token))
    assert response.status_code == 200, response.get_data(as_text=True)
    return upstream.requests[-1].header("authorization").removeprefix("Bearer ")


def _eventually(check, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def test_history_rotate_restore(api, client, project, provider, project_token, upstream):
    base = f"{_providers(project)}/openai"
    assert _key_seen(client, project_token, upstream) == FAKE_KEY
    rotated = api.post(f"{base}/rotate", json={"api_key": NEW_KEY})
    assert rotated.status_code == 200, rotated.json
    assert rotated.json["version"] == 2 and rotated.json["key_hint"] == "wxyz"
    assert rotated.json["base_url"] == upstream.url  # settings kept
    assert _key_seen(client, project_token, upstream) == NEW_KEY

    versions = api.get(f"{base}/versions").json
    assert [(v["version"], v["change"], v["key_hint"], v["current"]) for v in versions] == [
        (1, "set", "abcd", False),
        (2, "rotated", "wxyz", True),
    ]
    assert all(v["created_by"].startswith("operator:") and v["restorable"] for v in versions)

    restored = api.post(f"{base}/versions/1/restore")
    assert restored.status_code == 200, restored.json
    assert restored.json["version"] == 3 and restored.json["key_hint"] == "abcd"
    assert _key_seen(client, project_token, upstream) == FAKE_KEY
    versions = api.get(f"{base}/versions").json
    assert [(v["version"], v["change"], v["current"]) for v in versions][-1] == (3, "restored", True)
    assert_error(api.post(f"{base}/versions/9/restore"), 422)

    org = project.split("/")[0]
    actions = [r["action"] for r in audit.query(api.client.application.extensions["jetpero.db"], org)["records"]]
    assert {"provider.rotated", "provider.restored"} <= set(actions)


def test_delete_keeps_history_until_purge(api, project, provider):
    base = f"{_providers(project)}/openai"
    api.post(f"{base}/rotate", json={"api_key": NEW_KEY})
    assert api.delete(base).status_code == 204
    assert_error(api.get(base), 404)
    assert api.get(_providers(project)).json == []
    versions = api.get(f"{base}/versions").json
    assert [(v["version"], v["change"], v["current"]) for v in versions] == [
        (1, "set", False),
        (2, "rotated", False),
        (3, "deleted", False),
    ]
    assert api.post(f"{base}/versions/2/restore").status_code == 200  # an undelete, as version 4
    assert api.get(base).json["key_hint"] == "wxyz"
    assert api.delete(base).status_code == 204
    again = api.put(base, json={"template": "openai", "api_key": NEW_KEY, "base_url": "https://api.openai.com"})
    assert again.status_code == 200 and again.json["version"] == 6  # after version 5, the tombstone
    assert api.delete(base, query_string={"purge": "true"}).status_code == 204
    assert_error(api.get(f"{base}/versions"), 404)
    assert_error(api.delete(base, query_string={"purge": "true"}), 404)


def test_verify_refuses_a_key_the_provider_rejects(api, project, provider, upstream):
    base = f"{_providers(project)}/openai"
    upstream.rejected_keys.add(BAD_KEY)
    refused = api.post(f"{base}/rotate", json={"api_key": BAD_KEY, "verify": True})
    assert_error(refused, 422)
    assert "refused the new key" in refused.json["message"]
    assert api.get(base).json["version"] == 1
    upstream.clear()
    assert api.post(f"{base}/rotate", json={"api_key": NEW_KEY, "verify": True}).status_code == 200
    (check,) = upstream.requests
    assert (check.method, check.path, check.header("authorization")) == ("GET", "/v1/models", f"Bearer {NEW_KEY}")


def test_every_worker_uses_the_new_key_and_a_stream_finishes_on_the_old(
    api, client, make_app, project, provider, project_token, upstream
):
    other = make_app().test_client()
    assert _key_seen(other, project_token, upstream) == FAKE_KEY  # cached on the second worker
    stream = client.post("/proxy/openai/drip?count=6&interval=0.1", headers=bearer(project_token), buffered=False)
    chunks = stream.response
    first = next(iter(chunks))
    assert first.startswith(b"data: 0")
    assert api.post(f"{_providers(project)}/openai/rotate", json={"api_key": NEW_KEY}).status_code == 200
    rest = b"".join(chunks)
    assert rest.endswith(b"data: 5\n\n")  # the stream ended, on the key it started with
    drip = [r for r in upstream.requests if r.path.startswith("/drip")]
    assert drip[-1].header("authorization") == f"Bearer {FAKE_KEY}"
    assert _key_seen(client, project_token, upstream) == NEW_KEY
    assert _eventually(lambda: _key_seen(other, project_token, upstream) == NEW_KEY, timeout=3)


def test_concurrent_rotate_and_put_one_wins(api, app, project, provider, upstream):
    org, slug = project.split("/")
    vault = app.extensions["jetpero"].vault
    base = f"{_providers(project)}/openai"

    def put_meanwhile(current, key):  # runs after the rotation read the record, before it writes
        assert (
            api.put(base, json={"template": "openai", "api_key": NEW_KEY, "base_url": upstream.url}).status_code == 200
        )

    with pytest.raises(Conflict):
        provider_keys.rotate(vault, COMMAND_LINE, org, slug, "openai", {"api_key": BAD_KEY}, put_meanwhile)
    assert api.get(base).json["key_hint"] == "wxyz"  # the PUT won, the rotation changed nothing
    assert api.get(base).json["version"] == 2


def test_rotation_policy_overdue_and_key_age(api, app, make_app, bao, project, provider, operator_token):
    org, slug = project.split("/")
    base = f"{_providers(project)}/openai"
    policy = api.put(f"{base}/rotation-policy", json={"rotate_every_days": 30})
    assert policy.status_code == 200 and policy.json["overdue"] is False and policy.json["rotate_by"]
    assert api.get(f"/orgs/{org}/rotation-due").json == []

    root = bao.root(namespace=f"{org}/{slug}")  # an old key: set 40 days ago
    current = root.secrets.kv.v2.read_secret_version(
        path="providers/openai", mount_point="kv", raise_on_deleted_version=True
    )["data"]["data"]
    stale = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 40 * 86400))
    root.secrets.kv.v2.create_or_update_secret(
        path="providers/openai", secret={**current, "updated_at": stale}, mount_point="kv"
    )
    shown = api.get(base).json
    assert shown["overdue"] is True
    assert api.get(_providers(project)).json[0]["overdue"] is True
    (due,) = api.get(f"/orgs/{org}/rotation-due").json
    assert (due["project"], due["provider"], due["key_hint"]) == (slug, "openai", "abcd")

    scraped = make_app(JETPERO_METRICS_TOKEN="scrape-secret", JETPERO_ROTATION_INTERVAL="600")
    worker = scraped.extensions["jetpero"]
    ages, _ = run_all(worker.vault, worker.config)  # what the job does once it holds its lease
    assert time.time() - ages[(org, slug, "openai")] > 39 * 86400
    # The gauge is the process's: the session app's own rotation job may set it meanwhile from an
    # older read, as a second app in one process would (one app per worker in production).
    for _ in range(5):
        provider_key_ages(ages)  # what its tick hook does with the ages it read
        metrics = scraped.test_client().get("/metrics", headers=bearer("scrape-secret")).get_data(as_text=True)
        lines = [x for x in metrics.splitlines() if x.startswith("jetpero_provider_key_age_seconds") and slug in x]
        if lines:
            break
    line = lines[0]
    assert float(line.rsplit(" ", 1)[1]) > 39 * 86400
