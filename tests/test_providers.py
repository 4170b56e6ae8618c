"""Provider keys: write-only, encrypted bound to the provider name, versioned with check-and-set."""

from __future__ import annotations

import base64
import json
import threading

import hvac.exceptions
import pytest

from app.rules.providers import TEMPLATES
from app.vault import kv
from tests.checks import CheckedApi, assert_error
from tests.helpers import FAKE_KEY, project_path, unique

KEY_A = "sk-fake-AAAAAAAAAAAAAAAAAAAAAAAA-aaa1"
KEY_B = "sk-fake-BBBBBBBBBBBBBBBBBBBBBBBB-bbb2"
KEY_C = "sk-fake-CCCCCCCCCCCCCCCCCCCCCCCC-ccc3"


@pytest.fixture(scope="module")
def strict_app(make_app):
    """An app that refuses private upstreams (the default outside tests)."""
    return make_app(JETPERO_ALLOW_PRIVATE_UPSTREAMS="false")


@pytest.fixture(scope="module")
def strict(strict_app, operator_token):
    """(admin API of the strict app, a project path in it), shared by the base-URL cases."""
    strict = CheckedApi(strict_app.test_client(), operator_token)
    org = unique("strict")
    assert strict.post("/orgs", json={"slug": org}).status_code == 201
    assert strict.post(f"/orgs/{org}/projects", json={"slug": "abc.co"}).status_code == 201
    return strict, f"/orgs/{org}/projects/abc.co"


def _stored(bao, project: str, name: str, version: int | None = None) -> dict:
    response = bao.root(project).secrets.kv.v2.read_secret_version(
        path=f"providers/{name}", mount_point="kv", version=version, raise_on_deleted_version=True
    )
    return response["data"]["data"]


def _decrypt(bao, project: str, ciphertext: str, context: str | None) -> str:
    extra = {"context": base64.b64encode(context.encode()).decode()} if context is not None else {}
    response = bao.root(project).secrets.transit.decrypt_data(
        name="provider-keys", ciphertext=ciphertext, mount_point="transit", **extra
    )
    return base64.b64decode(response["data"]["plaintext"]).decode()


def test_put_get_list_delete(api, bao, project):
    path = f"{project_path(project)}/providers"
    r = api.put(f"{path}/openai", json={"template": "openai", "api_key": FAKE_KEY})
    assert r.status_code == 200, r.json
    assert FAKE_KEY.encode() not in r.get_data()
    assert "api_key" not in r.json and "ciphertext" not in r.json
    assert r.json["name"] == "openai" and r.json["template"] == "openai"
    assert r.json["base_url"] == "https://api.openai.com" and r.json["auth_type"] == "bearer"
    assert r.json["key_hint"] == FAKE_KEY[-4:] and r.json["version"] == 1
    assert r.json["created_at"] and r.json["updated_at"]
    assert api.get(f"{path}/openai").json == r.json

    assert api.put(f"{path}/claude", json={"template": "anthropic", "api_key": KEY_A}).status_code == 200
    listed = api.get(path).json
    assert [p["name"] for p in listed] == ["claude", "openai"]
    assert {p["key_hint"] for p in listed} == {KEY_A[-4:], FAKE_KEY[-4:]}
    assert listed[0]["auth_type"] == "header" and listed[0]["auth_name"] == "x-api-key"

    assert api.delete(f"{path}/openai").status_code == 204
    assert_error(api.get(f"{path}/openai"), 404)
    assert [p["name"] for p in api.get(path).json] == ["claude"]
    with pytest.raises(hvac.exceptions.InvalidPath):
        _stored(bao, project, "openai")  # every version is gone, not only the latest
    assert_error(api.delete(f"{path}/openai"), 404)


def test_each_put_is_a_new_version(api, bao, project):
    path = f"{project_path(project)}/providers/openai"
    first = api.put(path, json={"template": "openai", "api_key": KEY_A}).json
    second = api.put(path, json={"template": "openai", "api_key": KEY_B}).json
    third = api.put(path, json={"template": "openai", "api_key": KEY_C}).json
    assert [first["version"], second["version"], third["version"]] == [1, 2, 3]
    assert [first["key_hint"], second["key_hint"], third["key_hint"]] == ["aaa1", "bbb2", "ccc3"]
    assert third["created_at"] == first["created_at"]
    assert api.get(path).json["version"] == 3

    metadata = bao.root(project).secrets.kv.v2.read_secret_metadata(path="providers/openai", mount_point="kv")
    assert metadata["data"]["current_version"] == 3
    # History: each version still holds its own key.
    for version, key in ((1, KEY_A), (2, KEY_B), (3, KEY_C)):
        assert _decrypt(bao, project, _stored(bao, project, "openai", version)["ciphertext"], "openai") == key


def test_hint_only_for_long_keys(api, project):
    path = f"{project_path(project)}/providers/openai"
    assert api.put(path, json={"template": "openai", "api_key": "sk-fake-15chars"}).json["key_hint"] == ""
    assert api.put(path, json={"template": "openai", "api_key": "sk-fake-16chars!"}).json["key_hint"] == "ars!"
    assert api.put(path, json={"template": "openai", "api_key": "x"}).json["key_hint"] == ""


def test_every_template(api, project):
    path = f"{project_path(project)}/providers"
    for name, template in TEMPLATES.items():
        if name == "custom":
            continue
        r = api.put(f"{path}/{name}", json={"template": name, "api_key": FAKE_KEY})
        assert r.status_code == 200, (name, r.json)
        assert r.json["base_url"] == template.base_url
        assert (r.json["auth_type"], r.json["auth_name"]) == (template.auth_type, template.auth_name)
    assert len(api.get(path).json) == len(TEMPLATES) - 1
    assert_error(api.put(f"{path}/x", json={"template": "stripe", "api_key": FAKE_KEY}), 422, "template")
    assert_error(api.put(f"{path}/x", json={"api_key": FAKE_KEY}), 422, "template")
    assert_error(api.put(f"{path}/Not_A_Slug", json={"template": "openai", "api_key": FAKE_KEY}), 404)


def test_custom_provider(api, project):
    path = f"{project_path(project)}/providers"
    custom = {"template": "custom", "api_key": FAKE_KEY}
    assert_error(api.put(f"{path}/mine", json=custom), 422, "base_url")
    assert_error(api.put(f"{path}/mine", json={**custom, "base_url": ""}), 422, "base_url")
    r = api.put(f"{path}/mine", json={**custom, "base_url": "https://api.example.com/v2/"})
    assert r.status_code == 200, r.json
    assert r.json["base_url"] == "https://api.example.com/v2" and r.json["auth_type"] == "bearer"
    header = {**custom, "base_url": "https://api.example.com", "auth_type": "header"}
    assert_error(api.put(f"{path}/mine", json=header), 422, "auth_name")
    r = api.put(f"{path}/mine", json={**header, "auth_name": "X-Api-Token"})
    assert (r.json["auth_type"], r.json["auth_name"], r.json["version"]) == ("header", "X-Api-Token", 2)
    query = {**custom, "base_url": "https://api.example.com", "auth_type": "query", "auth_name": "key"}
    assert api.put(f"{path}/mine", json=query).json["auth_type"] == "query"
    assert_error(api.put(f"{path}/mine", json={**header, "auth_name": "Bad Name"}), 422, "auth_name")
    assert_error(api.put(f"{path}/mine", json={**custom, "base_url": "https://x.io", "auth_type": "x"}), 422)
    # Only a custom provider chooses how its key is sent.
    r = api.put(f"{path}/openai", json={"template": "openai", "api_key": FAKE_KEY, "auth_type": "query"})
    assert_error(r, 422, "auth_type")
    # A template's base URL can be overridden (e.g. a regional endpoint).
    r = api.put(
        f"{path}/openai", json={"template": "openai", "api_key": FAKE_KEY, "base_url": "https://eu.example.com"}
    )
    assert r.json["base_url"] == "https://eu.example.com"


BAD_KEYS = [
    "sk-fake with-space-000000000000",
    " sk-fake-leading-space-0000000",
    "sk-fake-trailing-space-000000 ",
    "sk-fake-tab\t000000000000000000",
    "sk-fake-newline\n0000000000000",
    "sk-fake-crlf\r\n00000000000000",
    "sk-fake-nul\x00000000000000000",
    "sk-fake-del\x7f000000000000000",
    "sk-fake-esc\x1b[31m00000000000",
    "sk-fake-nbsp\u00a00000000000000",
    "sk-fake-accent-é00000000000000",
    "sk-fake-zero-width\u200b000000",
    "sk-fake-emoji-\U0001f511000000",
    "",
    "x" * 4097,
    12345678,
    None,
]


@pytest.mark.parametrize("bad", BAD_KEYS, ids=range(len(BAD_KEYS)))
def test_bad_keys_are_422_naming_api_key(api, project, bad):
    path = f"{project_path(project)}/providers/openai"
    assert_error(api.put(path, json={"template": "openai", "api_key": bad}), 422, "api_key")
    assert_error(api.get(path), 404)  # nothing stored


def test_missing_key_is_422(api, project):
    assert_error(api.put(f"{project_path(project)}/providers/openai", json={"template": "openai"}), 422, "api_key")


REFUSED_BASE_URLS = [
    "http://127.0.0.1:8080",
    "https://127.0.0.1",
    "http://localhost:8080",
    "https://api.localhost",
    "http://10.0.0.5",
    "https://172.16.3.4",
    "https://192.168.1.1",
    "http://169.254.169.254/latest/meta-data",
    "https://100.64.0.1",
    "http://0.0.0.0",
    "http://0x7f000001",
    "http://2130706433",
    "http://0177.0.0.1",
    "http://127.1",
    "http://[::1]",
    "http://[::ffff:127.0.0.1]",
    "https://[::ffff:7f00:1]",
    "https://[fe80::1]",
    "https://[fd00::1]",
    "https://user:pw@api.example.com",
    "https://api.example.com@127.0.0.1",
    "https://user@api.example.com",
    "file:///etc/passwd",
    "ftp://api.example.com",
    "gopher://api.example.com",
    "http://api.example.com",  # a public host must use TLS
    "https://api.example.com/v1?x=1",
    "https://api.example.com/#frag",
    "https://api.example.com/a/../b",
    "https://api.example.com/%2e%2e/",
    "https://api.example.com:99999",
    "https://",
    "api.example.com",
    "//api.example.com",
]


@pytest.mark.parametrize("url", REFUSED_BASE_URLS)
def test_unsafe_base_urls_are_refused(strict, url):
    strict, project = strict
    path = f"{project}/providers"
    assert_error(
        strict.put(f"{path}/mine", json={"template": "custom", "api_key": FAKE_KEY, "base_url": url}), 422, "base_url"
    )
    assert_error(
        strict.put(f"{path}/openai", json={"template": "openai", "api_key": FAKE_KEY, "base_url": url}), 422, "base_url"
    )
    assert_error(strict.get(f"{path}/openai"), 404)
    assert all(p["base_url"] != url.rstrip("/") for p in strict.get(path).json)


def test_public_https_base_url_is_accepted_when_strict(strict):
    strict, project = strict
    r = strict.put(
        f"{project}/providers/mine",
        json={"template": "custom", "api_key": FAKE_KEY, "base_url": "https://api.example.com:8443/v1"},
    )
    assert r.status_code == 200, r.json
    assert r.json["base_url"] == "https://api.example.com:8443/v1"


def test_stored_record_holds_only_ciphertext_bound_to_the_name(api, bao, project, provider):
    data = _stored(bao, project, "openai")
    assert set(data) == {
        "template",
        "base_url",
        "auth_type",
        "auth_name",
        "key_hint",
        "ciphertext",
        "created_at",
        "updated_at",
        "updated_by",
        "rotate_every_days",
    }
    raw = json.dumps(data)
    assert FAKE_KEY not in raw and FAKE_KEY[:-4] not in raw
    assert base64.b64encode(FAKE_KEY.encode()).decode()[:-4] not in raw
    assert data["ciphertext"].startswith("vault:v1:")
    assert _decrypt(bao, project, data["ciphertext"], "openai") == FAKE_KEY  # control
    # Bound to the provider name: under any other context (or none) it does not decrypt.
    for context in ("anthropic", "openai2", "OpenAI", ""):
        with pytest.raises(hvac.exceptions.InvalidRequest):
            _decrypt(bao, project, data["ciphertext"], context)
    with pytest.raises(hvac.exceptions.InvalidRequest):
        _decrypt(bao, project, data["ciphertext"], None)


def _threads(target, count: int) -> None:
    threads = [threading.Thread(target=target, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not any(thread.is_alive() for thread in threads)


def test_controlled_race_loser_gets_409(app, operator_token, bao, project, provider, monkeypatch):
    """Both writers read the same version before either writes: check-and-set lets one win."""
    path = f"{project_path(project)}/providers/openai"
    keys = [KEY_A, KEY_B]
    barrier = threading.Barrier(2)
    real = kv.read_or_empty

    def read_then_wait(client, mount, key_path):
        result = real(client, mount, key_path)
        if key_path == "providers/openai":
            barrier.wait(timeout=10)
        return result

    monkeypatch.setattr(kv, "read_or_empty", read_then_wait)
    results: dict[int, object] = {}

    def put(i: int) -> None:
        writer = CheckedApi(app.test_client(), operator_token)
        results[i] = writer.put(path, json={"template": "openai", "api_key": keys[i]})

    _threads(put, 2)
    monkeypatch.undo()

    statuses = sorted(r.status_code for r in results.values())
    assert statuses == [200, 409], [r.get_json() for r in results.values()]
    winner = next(i for i, r in results.items() if r.status_code == 200)
    loser = 1 - winner
    assert_error(results[loser], 409)
    assert results[winner].json["version"] == 2
    current = CheckedApi(app.test_client(), operator_token).get(path).json
    assert current["version"] == 2 and current["key_hint"] == keys[winner][-4:]
    assert _decrypt(bao, project, _stored(bao, project, "openai")["ciphertext"], "openai") == keys[winner]


def test_concurrent_puts_lose_no_update(app, operator_token, bao, project, provider):
    """Many writers at once: each success is its own version, every other writer gets 409."""
    path = f"{project_path(project)}/providers/openai"
    count = 8
    keys = [f"sk-fake-concurrent-{i:02d}-000000000000-{i:04d}" for i in range(count)]
    barrier = threading.Barrier(count)
    results: dict[int, object] = {}

    def put(i: int) -> None:
        writer = CheckedApi(app.test_client(), operator_token)
        barrier.wait(timeout=10)
        results[i] = writer.put(path, json={"template": "openai", "api_key": keys[i]})

    _threads(put, count)
    assert {r.status_code for r in results.values()} <= {200, 409}, [r.get_json() for r in results.values()]
    winners = {r.json["version"]: i for i, r in results.items() if r.status_code == 200}
    assert winners, "at least one writer wins"
    assert len(winners) == sum(r.status_code == 200 for r in results.values())  # one winner per version
    assert sorted(winners) == list(range(2, 2 + len(winners)))  # no gaps: no write went unreported
    assert CheckedApi(app.test_client(), operator_token).get(path).json["version"] == 1 + len(winners)
    for version, i in winners.items():  # each success stored exactly its own key
        stored = _stored(bao, project, "openai", version)
        assert stored["key_hint"] == keys[i][-4:]
        assert _decrypt(bao, project, stored["ciphertext"], "openai") == keys[i]
