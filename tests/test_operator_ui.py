"""The operator's Vault token browses everything the UI shows, and decrypts nothing.

Each call is one the OpenBao web UI makes when an operator logs in with a token and
switches namespace to `<org>/<project>`.
"""

from __future__ import annotations

import pytest
import requests

from app.vault.layout import REGISTRY
from tests.helpers import FAKE_KEY


@pytest.fixture
def operator_vault_token(app, bao, monkeypatch):
    monkeypatch.setenv("VAULT_TOKEN", bao.root_token)
    result = app.test_cli_runner().invoke(args=["operator-vault-token", "--ttl", "10m"])
    assert result.exit_code == 0, result.output
    return result.output.strip()


def _call(bao, token: str, method: str, path: str, namespace: str | None = None, **kwargs) -> requests.Response:
    headers = {"X-Vault-Token": token}
    if namespace:
        headers["X-Vault-Namespace"] = namespace
    return requests.request(method, f"{bao.addr}/v1/{path}", headers=headers, timeout=5, **kwargs)


def test_operator_browses_every_org_and_project(bao, project, provider, operator_vault_token):
    org, slug = project.split("/")
    token = operator_vault_token

    def ok(method, path, namespace=None):
        response = _call(bao, token, method, path, namespace)
        assert response.status_code == 200, (method, path, namespace, response.status_code)
        return response.json()["data"]

    assert f"{org}/" in ok("LIST", "sys/namespaces")["keys"]
    assert f"{slug}/" in ok("LIST", "sys/namespaces", org)["keys"]
    mounts = ok("GET", "sys/internal/ui/mounts", project)["secret"]
    assert {"transit/", "kv/"} <= set(mounts)
    assert ok("LIST", "kv/metadata/providers", project)["keys"] == ["openai"]
    assert ok("GET", "kv/metadata/providers/openai", project)["current_version"] == 1
    assert ok("GET", "transit/keys/provider-keys", project)["type"] == "aes256-gcm96"
    assert ok("GET", "transit/keys/token-signing", project)["type"] == "ed25519"
    assert "kv/data/*" in ok("GET", "sys/policies/acl/jetpero-project", project)["policy"]
    assert ok("LIST", "jetpero/metadata/projects", org)["keys"] == [slug]
    assert "orgs/" in ok("LIST", f"{REGISTRY}/metadata")["keys"]
    ok("GET", "sys/audit")


def test_operator_never_decrypts(bao, project, provider, operator_vault_token):
    token = operator_vault_token
    record = bao.root(project).secrets.kv.v2.read_secret_version(
        path="providers/openai", mount_point="kv", raise_on_deleted_version=True
    )
    ciphertext = record["data"]["data"]["ciphertext"]
    refused = [
        ("GET", "kv/data/providers/openai", {}),
        ("POST", "transit/decrypt/provider-keys", {"json": {"ciphertext": ciphertext, "context": "b3BlbmFp"}}),
        ("POST", "transit/encrypt/provider-keys", {"json": {"plaintext": "eA==", "context": "b3BlbmFp"}}),
        ("POST", "transit/sign/token-signing", {"json": {"input": "eA=="}}),
        ("GET", "transit/export/encryption-key/provider-keys", {}),
        ("GET", "transit/backup/provider-keys", {}),
        ("POST", "transit/keys/provider-keys/rotate", {}),
        ("DELETE", "kv/metadata/providers/openai", {}),
    ]
    for method, path, kwargs in refused:
        response = _call(bao, token, method, path, project, **kwargs)
        assert response.status_code == 403, (method, path, response.status_code)
        assert FAKE_KEY not in response.text
    assert _call(bao, token, "GET", "sys/policies/acl/jetpero-project", project).status_code == 200
    # nor can it change the layout
    assert _call(bao, token, "POST", "sys/namespaces/intruder").status_code == 403
    assert _call(bao, token, "POST", "sys/mounts/x", project, json={"type": "kv"}).status_code == 403
