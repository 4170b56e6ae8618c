"""Tenancy enforced by Vault itself: a project's token, the app identity, and ciphertexts stay put."""

from __future__ import annotations

import base64
import json
import threading
from dataclasses import dataclass

import hvac
import hvac.exceptions
import pytest

from app.services import provider_keys
from app.vault import kv
from app.vault.errors import PolicyDenied, VaultError
from tests.checks import assert_error
from tests.helpers import unique

KEYS = {
    "abc.co": "sk-fake-tenant-ABC-000000000000-abc1",
    "tt.net": "sk-fake-tenant-TTN-000000000000-ttn2",
    "other": "sk-fake-tenant-OTH-000000000000-oth3",
}


@dataclass
class Tenants:
    org: str
    other_org: str

    @property
    def a(self) -> str:
        return f"{self.org}/abc.co"

    @property
    def b(self) -> str:
        return f"{self.org}/tt.net"

    @property
    def c(self) -> str:  # same project slug, another org
        return f"{self.other_org}/abc.co"


@pytest.fixture
def tenants(api, org) -> Tenants:
    other = unique("org")
    assert api.post("/orgs", json={"slug": other}).status_code == 201
    t = Tenants(org, other)
    for ns, key in ((t.a, KEYS["abc.co"]), (t.b, KEYS["tt.net"]), (t.c, KEYS["other"])):
        o, p = ns.split("/")
        assert api.post(f"/orgs/{o}/projects", json={"slug": p}).status_code == 201
        r = api.put(f"/orgs/{o}/projects/{p}/providers/openai", json={"template": "openai", "api_key": key})
        assert r.status_code == 200
    return t


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _ciphertext(bao, ns: str, name: str = "openai") -> str:
    return bao.root(ns).secrets.kv.v2.read_secret_version(
        path=f"providers/{name}", mount_point="kv", raise_on_deleted_version=True
    )["data"]["data"]["ciphertext"]


def _client(bao, token: str, namespace: str | None) -> hvac.Client:
    return hvac.Client(url=bao.addr, token=token, namespace=namespace)


def _refused(call) -> None:
    with pytest.raises(hvac.exceptions.Forbidden):
        call()


def test_project_token_is_refused_outside_its_namespace(app, bao, tenants):
    """The token the app uses inside project A, minted the way the app mints it."""
    vault = app.extensions["jetpero"].vault
    token = vault.project(tenants.org, "abc.co", lambda c: c.token)
    own = _client(bao, token, tenants.a)

    # Control: in its own namespace it reads the record and decrypts the key.
    record = own.secrets.kv.v2.read_secret_version(
        path="providers/openai", mount_point="kv", raise_on_deleted_version=True
    )["data"]["data"]
    plain = own.secrets.transit.decrypt_data(
        name="provider-keys", ciphertext=record["ciphertext"], context=_b64("openai"), mount_point="transit"
    )
    assert base64.b64decode(plain["data"]["plaintext"]).decode() == KEYS["abc.co"]

    for ns in (tenants.b, tenants.c):  # a sibling project; the same slug in another org
        there = _client(bao, token, ns)
        _refused(
            lambda c=there: c.secrets.kv.v2.read_secret_version(
                path="providers/openai", mount_point="kv", raise_on_deleted_version=True
            )
        )
        _refused(lambda c=there: c.secrets.kv.v2.list_secrets(path="providers", mount_point="kv"))
        _refused(
            lambda c=there, ns=ns: c.secrets.transit.decrypt_data(
                name="provider-keys", ciphertext=_ciphertext(bao, ns), context=_b64("openai"), mount_point="transit"
            )
        )
        _refused(
            lambda c=there: c.secrets.transit.encrypt_data(
                name="provider-keys", plaintext=_b64("x"), context=_b64("openai"), mount_point="transit"
            )
        )
        _refused(
            lambda c=there: c.secrets.transit.sign_data(
                name="token-signing", hash_input=_b64("x"), mount_point="transit"
            )
        )

    org_ns = _client(bao, token, tenants.org)
    _refused(lambda: org_ns.secrets.kv.v2.list_secrets(path="members", mount_point="jetpero"))
    _refused(
        lambda: org_ns.secrets.kv.v2.read_secret_version(
            path="projects/abc.co", mount_point="jetpero", raise_on_deleted_version=True
        )
    )
    _refused(lambda: org_ns.adapter.list("/v1/sys/namespaces"))

    root_ns = _client(bao, token, None)
    _refused(
        lambda: root_ns.secrets.kv.v2.read_secret_version(
            path="changes", mount_point="jetpero-kv", raise_on_deleted_version=True
        )
    )
    _refused(lambda: root_ns.sys.list_mounted_secrets_engines())
    _refused(lambda: root_ns.adapter.list("/v1/sys/namespaces"))

    # sys/ of its own namespace, and anything that would widen its own rights.
    _refused(lambda: own.sys.list_mounted_secrets_engines())
    _refused(lambda: own.sys.list_acl_policies())
    _refused(
        lambda: own.sys.create_or_update_acl_policy(
            name="jetpero-project", policy='path "*" { capabilities = ["sudo"] }'
        )
    )
    _refused(lambda: own.sys.enable_secrets_engine("kv", path="mine"))
    _refused(lambda: own.adapter.list("/v1/sys/namespaces"))
    _refused(lambda: own.adapter.post("/v1/sys/namespaces/child"))
    _refused(lambda: own.auth.token.create(policies=["jetpero-project"]))
    _refused(lambda: own.secrets.transit.read_key(name="provider-keys", mount_point="transit"))
    _refused(
        lambda: own.secrets.transit.export_key(name="provider-keys", key_type="encryption-key", mount_point="transit")
    )
    assert own.lookup_token()["data"]["policies"] == ["default", "jetpero-project"]


def test_app_identity_cannot_read_keys_in_a_project(app, bao, approle_file, tenants):
    """The provisioner identity manages lifecycle only: Vault refuses it the secrets."""
    with open(approle_file, encoding="utf-8") as fh:
        creds = json.load(fh)
    login = hvac.Client(url=bao.addr).auth.approle.login(
        role_id=creds["role_id"], secret_id=creds["secret_id"], use_token=False
    )
    token = login["auth"]["client_token"]
    assert login["auth"]["policies"] == ["default", "jetpero-app"]
    children = _client(bao, token, tenants.org).adapter.list("/v1/sys/namespaces")["data"]["keys"]
    assert {"abc.co/", "tt.net/"} <= set(children)  # control: it does manage the org's namespaces

    project = _client(bao, token, tenants.a)
    _refused(
        lambda: project.secrets.kv.v2.read_secret_version(
            path="providers/openai", mount_point="kv", raise_on_deleted_version=True
        )
    )
    _refused(lambda: project.secrets.kv.v2.list_secrets(path="providers", mount_point="kv"))
    _refused(
        lambda: project.secrets.transit.decrypt_data(
            name="provider-keys", ciphertext=_ciphertext(bao, tenants.a), context=_b64("openai"), mount_point="transit"
        )
    )
    _refused(
        lambda: project.secrets.transit.encrypt_data(name="provider-keys", plaintext=_b64("x"), mount_point="transit")
    )
    _refused(
        lambda: project.secrets.transit.sign_data(name="token-signing", hash_input=_b64("x"), mount_point="transit")
    )
    _refused(lambda: project.auth.token.create(policies=["root"]))

    # Through the app's own service layer the same refusal is a PolicyDenied (a 500, never data).
    vault = app.extensions["jetpero"].vault
    with pytest.raises(PolicyDenied):
        vault.app(lambda c: kv.read(c, "kv", "providers/openai"), namespace=tenants.a)


def test_a_ciphertext_does_not_decrypt_elsewhere(app, bao, tenants):
    stolen = _ciphertext(bao, tenants.a)
    for ns in (tenants.b, tenants.c):
        with pytest.raises(hvac.exceptions.InvalidRequest):
            bao.root(ns).secrets.transit.decrypt_data(
                name="provider-keys", ciphertext=stolen, context=_b64("openai"), mount_point="transit"
            )

    # Planting A's record in B (or under another provider name in A) gives nothing.
    record = bao.root(tenants.a).secrets.kv.v2.read_secret_version(
        path="providers/openai", mount_point="kv", raise_on_deleted_version=True
    )["data"]["data"]
    bao.root(tenants.b).secrets.kv.v2.create_or_update_secret(path="providers/openai", secret=record, mount_point="kv")
    bao.root(tenants.a).secrets.kv.v2.create_or_update_secret(path="providers/moved", secret=record, mount_point="kv")
    vault = app.extensions["jetpero"].vault
    with pytest.raises(VaultError):
        provider_keys.load_with_key(vault, tenants.org, "tt.net", "openai")
    with pytest.raises(VaultError):
        provider_keys.load_with_key(vault, tenants.org, "abc.co", "moved")
    assert provider_keys.load_with_key(vault, tenants.org, "abc.co", "openai")[1] == KEYS["abc.co"]


def test_each_project_gets_its_own_key_under_concurrency(app, tenants):
    vault = app.extensions["jetpero"].vault
    expected = {tenants.a: KEYS["abc.co"], tenants.b: KEYS["tt.net"], tenants.c: KEYS["other"]}
    wrong: list[tuple[str, str]] = []

    def load(ns: str) -> None:
        org, project = ns.split("/")
        for _ in range(10):
            _, key = provider_keys.load_with_key(vault, org, project, "openai")
            if key != expected[ns]:
                wrong.append((ns, key[-4:]))

    threads = [threading.Thread(target=load, args=(ns,)) for ns in expected for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert wrong == []


def test_api_never_crosses_projects(api, tenants):
    a, b = (f"/orgs/{tenants.org}/projects/{p}/providers" for p in ("abc.co", "tt.net"))
    assert api.put(f"{b}/only-b", json={"template": "openai", "api_key": KEYS["tt.net"]}).status_code == 200
    assert [p["name"] for p in api.get(a).json] == ["openai"]
    assert {p["key_hint"] for p in api.get(a).json} == {KEYS["abc.co"][-4:]}
    assert_error(api.get(f"{a}/only-b"), 404)
    assert_error(api.get(f"/orgs/{tenants.other_org}/projects/tt.net"), 404)
    assert [p["key_hint"] for p in api.get(f"/orgs/{tenants.other_org}/projects/abc.co/providers").json] == ["oth3"]
