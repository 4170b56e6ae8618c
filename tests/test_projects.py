"""Projects: a child namespace each, created all-or-nothing, deleted with its keys (crypto-shredding)."""

from __future__ import annotations

import threading

import hvac.exceptions
import pytest

from app.services import projects as vault_projects
from app.vault import policies
from app.vault.errors import Unavailable
from tests.checks import CheckedApi, assert_clean_logs, assert_error, namespaces
from tests.helpers import FAKE_KEY, project_path, unique


def _ciphertext(bao, project: str, provider: str = "openai") -> str:
    record = bao.root(project).secrets.kv.v2.read_secret_version(
        path=f"providers/{provider}", mount_point="kv", raise_on_deleted_version=True
    )
    return record["data"]["data"]["ciphertext"]


def _decrypt(bao, namespace: str, ciphertext: str, context: str = "openai") -> str:
    import base64

    response = bao.root(namespace).secrets.transit.decrypt_data(
        name="provider-keys",
        ciphertext=ciphertext,
        context=base64.b64encode(context.encode()).decode(),
        mount_point="transit",
    )
    return base64.b64decode(response["data"]["plaintext"]).decode()


def test_create_provisions_the_namespace(api, bao, org):
    r = api.post(
        f"/orgs/{org}/projects",
        json={"slug": "abc.co", "display_name": "ABC", "allowed_origins": ["https://abc.co", "http://localhost:3000"]},
    )
    assert r.status_code == 201, r.json
    assert r.json["org"] == org and r.json["slug"] == "abc.co" and r.json["display_name"] == "ABC"
    assert r.json["allowed_origins"] == ["https://abc.co", "http://localhost:3000"]
    assert r.json["created_at"] and r.json["updated_at"]

    ns = f"{org}/abc.co"
    assert namespaces(bao, org) == {"abc.co"}
    root = bao.root(ns)
    mounts = root.sys.list_mounted_secrets_engines()["data"]
    assert mounts["transit/"]["type"] == "transit"
    assert mounts["kv/"]["type"] == "kv" and mounts["kv/"]["options"]["version"] == "2"
    enc = root.secrets.transit.read_key(name="provider-keys", mount_point="transit")["data"]
    assert enc["type"] == "aes256-gcm96" and enc["derived"] is True and enc["exportable"] is False
    sig = root.secrets.transit.read_key(name="token-signing", mount_point="transit")["data"]
    assert sig["type"] == "ed25519" and sig["exportable"] is False
    policy = root.sys.read_acl_policy("jetpero-project")["data"]["policy"]
    assert policy == policies.text("jetpero-project")
    role = root.auth.token.read_role("jetpero-project")["data"]
    assert role["allowed_policies"] == ["jetpero-project"]

    assert [p["slug"] for p in api.get(f"/orgs/{org}/projects").json] == ["abc.co"]
    assert api.get(f"/orgs/{org}/projects/abc.co").json["display_name"] == "ABC"


def test_dotted_and_long_slugs(api, bao, org):
    longest = "p" + "x" * 61 + "1"
    for slug in ("tt.net", "abc.co", longest):
        assert api.post(f"/orgs/{org}/projects", json={"slug": slug}).status_code == 201, slug
    assert namespaces(bao, org) == {"tt.net", "abc.co", longest}
    assert [p["slug"] for p in api.get(f"/orgs/{org}/projects").json] == sorted(["tt.net", "abc.co", longest])
    for slug in (longest + "2", "Abc.co", "a/b", "a..b", "sys", "auth", "jetpero-x", "kv", "transit", ""):
        assert_error(api.post(f"/orgs/{org}/projects", json={"slug": slug}), 422, "slug")
    assert namespaces(bao, org) == {"tt.net", "abc.co", longest}


def test_invalid_fields_are_422_naming_the_field(api, org):
    path = f"/orgs/{org}/projects"
    assert_error(api.post(path, json={}), 422, "slug")
    for origin in ("abc.co", "https://abc.co/", "https://abc.co/path", "ftp://abc.co", "https://u:p@abc.co", "*"):
        assert_error(api.post(path, json={"slug": "abc.co", "allowed_origins": [origin]}), 422, "allowed_origins")
    assert_error(api.post(path, json={"slug": "abc.co", "display_name": ""}), 422, "display_name")
    assert_error(api.get(f"{path}/abc.co"), 404)


def test_duplicate_project_is_409(api, project):
    org, slug = project.split("/")
    assert_error(api.post(f"/orgs/{org}/projects", json={"slug": slug}), 409)
    assert api.get(project_path(project)).json["allowed_origins"] == ["https://app.example.com"]


def test_concurrent_creations_of_one_slug_one_wins(app, operator_token, bao, org):
    statuses = []
    barrier = threading.Barrier(4)

    def create() -> None:
        mine = CheckedApi(app.test_client(), operator_token)
        barrier.wait(timeout=10)
        statuses.append(mine.post(f"/orgs/{org}/projects", json={"slug": "race.io"}).status_code)

    threads = [threading.Thread(target=create) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(statuses) == [201, 409, 409, 409]
    assert namespaces(bao, org) == {"race.io"}
    assert "transit/" in bao.root(f"{org}/race.io").sys.list_mounted_secrets_engines()["data"]


def test_namespace_made_outside_jetpero_is_409_and_left_alone(api, bao, org):
    bao.root(org).adapter.post("/v1/sys/namespaces/ghost.io")
    assert_error(api.post(f"/orgs/{org}/projects", json={"slug": "ghost.io"}), 409)
    assert "ghost.io" in namespaces(bao, org)
    assert_error(api.get(f"/orgs/{org}/projects/ghost.io"), 404)


def _fail_after_provisioning(vault, org, slug):
    real_provision(vault, org, slug)  # every step done, then the last one "fails"
    # An exception whose text holds a key and a Vault path: neither may reach a response or a log.
    raise RuntimeError(f"injected failure at jetpero-kv/data/x sys/namespaces with {FAKE_KEY}")


def _unavailable_at_policy(client, name, policy=None):
    raise Unavailable()


real_provision = vault_projects._provision


@pytest.mark.parametrize(
    ("target", "attribute", "replacement", "status"),
    [
        (vault_projects, "_provision", _fail_after_provisioning, 500),
        (policies, "write", _unavailable_at_policy, 503),
    ],
    ids=["after-last-step", "vault-unavailable-mid-way"],
)
def test_creation_is_all_or_nothing(api, bao, org, monkeypatch, caplog, target, attribute, replacement, status):
    with monkeypatch.context() as patch:
        patch.setattr(target, attribute, replacement)
        r = api.post(f"/orgs/{org}/projects", json={"slug": "abc.co"})
        assert_error(r, status)
        assert r.json["message"] in ("Internal error.", "Vault is unavailable; retry later.")
    assert_clean_logs(caplog.records, FAKE_KEY)
    if status == 500:
        assert any(record.levelname == "ERROR" for record in caplog.records)  # logged, without its text
    assert "abc.co" not in namespaces(bao, org)
    assert_error(api.get(f"/orgs/{org}/projects/abc.co"), 404)
    assert api.get(f"/orgs/{org}/projects").json == []
    # Nothing is left to collide with: the same slug can be created, and works.
    assert api.post(f"/orgs/{org}/projects", json={"slug": "abc.co"}).status_code == 201
    r = api.put(f"/orgs/{org}/projects/abc.co/providers/openai", json={"template": "openai", "api_key": FAKE_KEY})
    assert r.status_code == 200, r.json


def test_patch(api, project):
    path = project_path(project)
    before = api.get(path).json
    r = api.patch(path, json={"display_name": "Renamed"})
    assert r.status_code == 200, r.json
    assert r.json["display_name"] == "Renamed" and r.json["allowed_origins"] == before["allowed_origins"]
    r = api.patch(path, json={"allowed_origins": ["https://a.example", "https://b.example:8443"]})
    assert r.json["allowed_origins"] == ["https://a.example", "https://b.example:8443"]
    after = api.get(path).json
    assert after["display_name"] == "Renamed" and after["allowed_origins"] == [
        "https://a.example",
        "https://b.example:8443",
    ]
    assert after["created_at"] == before["created_at"]

    assert_error(api.patch(path, json={"allowed_origins": ["not an origin"]}), 422, "allowed_origins")
    assert_error(api.patch(path, json={"slug": "other.io"}), 422, "slug")
    assert_error(api.patch(path, json={"display_name": "x" * 101}), 422, "display_name")
    assert api.get(path).json["display_name"] == "Renamed"
    org, _ = project.split("/")
    assert_error(api.patch(f"/orgs/{org}/projects/missing.io", json={"display_name": "x"}), 404)


def test_delete_shreds_the_keys(api, bao, project, provider):
    org, slug = project.split("/")
    path = project_path(project)
    old = _ciphertext(bao, project)
    assert _decrypt(bao, project, old) == FAKE_KEY  # control: it decrypts while the project lives

    assert api.delete(path).status_code == 204
    assert slug not in namespaces(bao, org)
    assert_error(api.get(path), 404)
    assert_error(api.get(f"{path}/providers/openai"), 404)
    assert slug not in [p["slug"] for p in api.get(f"/orgs/{org}/projects").json]
    assert_error(api.delete(path), 404)

    # Same slug again: a new namespace with new keys; the old ciphertext is noise now.
    assert api.post(f"/orgs/{org}/projects", json={"slug": slug}).status_code == 201
    assert api.get(f"{path}/providers").json == []
    with pytest.raises(hvac.exceptions.InvalidRequest):
        _decrypt(bao, project, old)


def test_delete_unknown_project_is_404(api, org):
    assert_error(api.delete(f"/orgs/{org}/projects/{unique('nope')}"), 404)
