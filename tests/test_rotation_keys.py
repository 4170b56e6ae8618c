"""Rotation of what JetPero keeps in Vault, against the real OpenBao: project tokens with a grace,
the project's signing key (rotate, retire), its encryption key (rotate, rewrap, retire), the key
settings every project gets, and the admin signing key from the command line."""

from __future__ import annotations

import base64
import secrets
import time

import hvac.exceptions
import pytest

from app.services import audit
from app.vault.bootstrap import bootstrap
from tests.checks import assert_error
from tests.helpers import FAKE_KEY, Bao, bearer, parts, project_path
from tools import openbao, procs

CHAT = "/proxy/openai/v1/chat/completions"
BODY = {"model": "m", "messages": []}
NEW_KEY = "sk-fake-TESTKEY-3333333333333333-rot8"


@pytest.fixture(autouse=True)
def trail(app):
    with audit.bound(app.extensions["jetpero.db"]):
        yield


@pytest.fixture(scope="module")
def second(make_app):
    """A second app: another worker, with caches of its own."""
    return make_app().test_client()


def _status(client, token: str) -> int:
    return client.post(CHAT, json=BODY, headers=bearer(token)).status_code


def _eventually(check, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def _issue(api, project: str) -> dict:
    body = {"name": "ci", "environment": "production", "expires_in": 3600, "scope": ["openai"]}
    response = api.post(f"{project_path(project)}/tokens", json=body)
    assert response.status_code == 201, response.json
    return response.json


def test_rotated_token_works_until_its_grace_ends_on_every_worker(api, client, second, project, provider, upstream):
    old = _issue(api, project)
    assert _status(second, old["token"]) == 200  # cached on the second worker before the rotation
    rotated = api.post(f"{project_path(project)}/tokens/{old['id']}/rotate", json={"grace_seconds": 2})
    assert rotated.status_code == 201, rotated.json
    new = rotated.json
    assert new["id"] != old["id"] and new["replaces"] == old["id"]
    assert (new["name"], new["environment"], new["scope"]) == ("ci", "production", ["openai"])
    assert _status(second, new["token"]) == 200 and _status(second, old["token"]) == 200  # in the grace
    assert _eventually(lambda: _status(second, old["token"]) == 401, timeout=6)  # nobody called revoke
    assert _status(client, old["token"]) == 401 and _status(client, new["token"]) == 200
    shown = api.get(f"{project_path(project)}/tokens/{old['id']}").json
    assert shown["retire_at"] == new["replaced_until"] and shown["revoked_at"] is None
    assert_error(api.post(f"{project_path(project)}/tokens/{old['id']}/rotate", json={}), 422)  # once only
    org = project.split("/")[0]
    records = audit.query(client.application.extensions["jetpero.db"], org, action="token.rotated")["records"]
    assert {r["target"] for r in records} == {old["id"]}
    too_long = api.post(f"{project_path(project)}/tokens/{new['id']}/rotate", json={"grace_seconds": 10**9})
    assert_error(too_long, 422)
    assert "grace_seconds" in too_long.json["message"]


def test_retired_signing_key_version_is_refused_on_every_worker(api, client, second, project, provider):
    org, slug = project.split("/")
    base = project_path(project)
    old = _issue(api, project)["token"]
    assert parts(old)[0]["kid"] == f"{org}/{slug}/1"
    assert _status(second, old) == 200  # cached (claims and public key) on the second worker
    rotated = api.post(f"{base}/signing-key/rotate")
    assert rotated.status_code == 200 and rotated.json["latest_version"] == 2
    new = _issue(api, project)["token"]
    assert parts(new)[0]["kid"] == f"{org}/{slug}/2"
    assert _status(client, old) == 200 and _status(second, new) == 200  # old tokens keep verifying
    assert [k["kid"] for k in api.get(f"{base}/jwks.json").json["keys"]] == [f"{org}/{slug}/1", f"{org}/{slug}/2"]

    assert_error(api.post(f"{base}/signing-key/retire", json={"min_version": 3}), 422)
    retired = api.post(f"{base}/signing-key/retire", json={"min_version": 2})
    assert retired.status_code == 200 and retired.json["min_version"] == 2
    assert _status(client, old) == 401
    assert _eventually(lambda: _status(second, old) == 401, timeout=3)
    assert _status(second, new) == 200
    assert [k["kid"] for k in api.get(f"{base}/jwks.json").json["keys"]] == [f"{org}/{slug}/2"]
    actions = {r["action"] for r in audit.query(api.client.application.extensions["jetpero.db"], org)["records"]}
    assert {"signing_key.rotated", "signing_key.retired"} <= actions


def test_rewrap_makes_old_ciphertexts_undecryptable(api, client, bao, project, provider, upstream):
    org, slug = project.split("/")
    base = project_path(project)
    root = bao.root(namespace=f"{org}/{slug}")

    def ciphertext() -> str:
        data = root.secrets.kv.v2.read_secret_version(
            path="providers/openai", mount_point="kv", raise_on_deleted_version=True
        )
        return data["data"]["data"]["ciphertext"]

    under_v1 = ciphertext()
    assert under_v1.startswith("vault:v1:")
    assert api.post(f"{base}/encryption-key/rotate").json["latest_version"] == 2
    token = _issue(api, project)["token"]
    assert _status(client, token) == 200  # still decrypts, under v1

    done = api.post(f"{base}/encryption-key/rewrap", json={"retire": True})
    assert done.status_code == 200, done.json
    assert done.json["min_version"] == 2
    assert done.json["rewrapped"] in (["openai"], [])  # [] if the session's rotation job got there first
    assert ciphertext().startswith("vault:v2:")
    context = base64.b64encode(b"openai").decode()
    with pytest.raises(hvac.exceptions.InvalidRequest):  # nobody, not even root, decrypts v1 any more
        root.secrets.transit.decrypt_data(
            name="provider-keys", ciphertext=under_v1, context=context, mount_point="transit"
        )
    again = api.post(f"{base}/encryption-key/rewrap", json={"retire": True})  # safe to re-run
    assert (again.json["rewrapped"], again.json["min_version"]) == ([], 2)

    client.application.extensions["jetpero"].provider_keys.clear()
    assert _status(client, token) == 200
    assert upstream.requests[-1].header("authorization") == f"Bearer {FAKE_KEY}"
    versions = api.get(f"{base}/providers/openai/versions").json
    assert [(v["version"], v["change"], v["encryption_key_version"], v["restorable"]) for v in versions] == [
        (1, "set", 1, False),
        (2, "rewrapped", 2, True),
    ]
    refused = api.post(f"{base}/providers/openai/versions/1/restore")
    assert_error(refused, 422)
    assert "retired" in refused.json["message"] and "store the key again" in refused.json["message"]
    assert api.post(f"{base}/providers/openai/rotate", json={"api_key": NEW_KEY}).json["version"] == 3
    actions = {r["action"] for r in audit.query(client.application.extensions["jetpero.db"], org)["records"]}
    assert {"encryption_key.rotated", "encryption_key.retired", "provider.rotated"} <= actions


def test_projects_get_history_length_and_auto_rotation(api, bao, project):
    org, slug = project.split("/")
    root = bao.root(namespace=f"{org}/{slug}")
    assert root.secrets.kv.v2.read_configuration(mount_point="kv")["data"]["max_versions"] == 100
    for key in ("provider-keys", "token-signing"):
        info = root.secrets.transit.read_key(name=key, mount_point="transit")["data"]
        assert info["auto_rotate_period"] == 90 * 86400
    assert api.get(f"{project_path(project)}/encryption-key").json["auto_rotate_days"] == 90


def test_rotation_run_applies_settings_to_existing_projects(app, api, bao, project):
    org, slug = project.split("/")
    root = bao.root(namespace=f"{org}/{slug}")
    root.secrets.transit.update_key_configuration(name="provider-keys", auto_rotate_period="0s", mount_point="transit")
    result = app.test_cli_runner().invoke(args=["rotation-run"])
    assert result.exit_code == 0, result.output
    info = root.secrets.transit.read_key(name="provider-keys", mount_point="transit")["data"]
    assert info["auto_rotate_period"] == 90 * 86400


@pytest.fixture(scope="module")
def own_bao(tmp_path_factory):
    """A Vault of this module's own: rotating and retiring its admin key leaves the session's alone."""
    port = procs.free_port()
    token = secrets.token_hex(16)
    process = openbao.start_dev(port, token, tmp_path_factory.mktemp("own-bao") / "bao.log")
    try:
        own = Bao(addr=openbao.address(port), root_token=token, process=process)
        path = str(tmp_path_factory.mktemp("own-creds") / "approle.json")
        bootstrap(own.root(), path)
        yield own, path
    finally:
        procs.stop(process)


def test_retired_admin_key_version_is_refused_on_every_worker(make_app, own_bao):
    own, path = own_bao
    first, other = make_app(bao=own, approle_file=path), make_app(bao=own, approle_file=path)
    runner = first.test_cli_runner()
    old = runner.invoke(args=["operator-token", "--name", "before"]).output.strip()
    assert parts(old)[0]["kid"] == "admin/1"
    assert other.test_client().get("/api/v1/orgs", headers=bearer(old)).status_code == 200  # cached there
    rotated = runner.invoke(args=["rotate-admin-key"])
    assert rotated.exit_code == 0 and '"latest_version": 2' in rotated.output, rotated.output
    new = runner.invoke(args=["operator-token", "--name", "after"]).output.strip()
    assert parts(new)[0]["kid"] == "admin/2"
    for app in (first, other):  # older admin tokens keep verifying until retired
        assert app.test_client().get("/api/v1/orgs", headers=bearer(old)).status_code == 200
    refused = runner.invoke(args=["retire-admin-key", "--min-version", "3"])
    assert refused.exit_code != 0 and "min_version" in refused.output
    result = runner.invoke(args=["retire-admin-key", "--min-version", "2"])
    assert result.exit_code == 0, result.output
    assert first.test_client().get("/api/v1/orgs", headers=bearer(old)).status_code == 401
    assert _eventually(lambda: other.test_client().get("/api/v1/orgs", headers=bearer(old)).status_code == 401, 3)
    for app in (first, other):
        assert app.test_client().get("/api/v1/orgs", headers=bearer(new)).status_code == 200
