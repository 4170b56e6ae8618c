"""Shared helpers: the admin API client, configs, projects set up through the admin API, forged JWS.

Forging: the tests hold Vault's root token, so they can have a project's own transit key sign
whatever header and claims they build (`Signer`). A claim-level attack signed that way fails
only because of the claim, never because of the signature.
"""

from __future__ import annotations

import base64
import json
import os
import uuid
from dataclasses import dataclass

import hvac
import pytest

from app.rules.policy import Subjects
from app.vault import transit
from config import Config

FAKE_KEY = "sk-fake-TESTKEY-0000000000000000-abcd"  # obviously fake provider key
UNIFORM_401 = {"code": 401, "status": "Unauthorized", "message": "Invalid or missing token."}


@dataclass
class Bao:
    addr: str
    root_token: str
    process: object

    def root(self, namespace: str | None = None) -> hvac.Client:
        return hvac.Client(url=self.addr, token=self.root_token, namespace=namespace)


def make_config(bao: Bao, approle_file: str, **overrides) -> Config:
    environ = {
        "VAULT_ADDR": bao.addr,
        "VAULT_APPROLE_FILE": approle_file,
        "VAULT_TIMEOUT": "2",
        "JETPERO_ALLOW_PRIVATE_UPSTREAMS": "true",  # the fake upstream is on loopback
        "JETPERO_SYNC_INTERVAL": "0.5",
        "JETPERO_UPSTREAM_READ_TIMEOUT": "5",
        # Beside the AppRole file, in the session's temporary folder: never the `.data/` of `make run`.
        "JETPERO_DATABASE_URL": f"sqlite:///{os.path.join(os.path.dirname(approle_file), 'jetpero.db')}",
        "JETPERO_COUNTERS_PATH": os.path.join(os.path.dirname(approle_file), "counters.sqlite3"),
    }
    environ.update({k: str(v) for k, v in overrides.items()})
    return Config.from_env(environ)


class Api:
    """The admin API as one bearer sees it (the `api` fixture is its checked kind, `CheckedApi`)."""

    def __init__(self, client, token: str):
        self.client = client
        self.token = token

    def call(self, method: str, path: str, **kwargs):
        headers = {"Authorization": f"Bearer {self.token}", **kwargs.pop("headers", {})}
        return self.client.open(f"/api/v1{path}", method=method, headers=headers, **kwargs)

    def get(self, path, **kw):
        return self.call("GET", path, **kw)

    def post(self, path, **kw):
        return self.call("POST", path, **kw)

    def put(self, path, **kw):
        return self.call("PUT", path, **kw)

    def patch(self, path, **kw):
        return self.call("PATCH", path, **kw)

    def delete(self, path, **kw):
        return self.call("DELETE", path, **kw)

    def as_(self, token: str) -> Api:
        return type(self)(self.client, token)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def project_path(project: str) -> str:
    org, slug = project.split("/")
    return f"/orgs/{org}/projects/{slug}"


@dataclass(frozen=True)
class Project:
    org: str
    slug: str

    @property
    def path(self) -> str:
        return f"/orgs/{self.org}/projects/{self.slug}"

    @property
    def namespace(self) -> str:
        return f"{self.org}/{self.slug}"


def create_org(api: Api) -> str:
    slug = unique("org")
    response = api.post("/orgs", json={"slug": slug})
    assert response.status_code == 201, response.json
    return slug


def create_project(
    api: Api, org: str | None = None, origins: tuple[str, ...] = ("https://app.example.com",)
) -> Project:
    org = org or create_org(api)
    slug = unique("proj") + ".co"
    response = api.post(f"/orgs/{org}/projects", json={"slug": slug, "allowed_origins": list(origins)})
    assert response.status_code == 201, response.json
    return Project(org, slug)


def put_provider(api: Api, project: Project, name: str, **body) -> dict:
    response = api.put(f"{project.path}/providers/{name}", json=body)
    assert response.status_code == 200, response.json
    return response.json


def issue_token(api: Api, project: Project, **body) -> dict:
    body = {"name": "t", "environment": "development", "expires_in": 3600, **body}
    response = api.post(f"{project.path}/tokens", json=body)
    assert response.status_code == 201, response.json
    return response.json


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64json(value) -> str:
    return b64(json.dumps(value, separators=(",", ":")).encode())


def unb64(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def parts(token: str) -> tuple[dict, dict, bytes]:
    """(header, claims, signature) of a compact JWS, unverified."""
    header, claims, signature = token.split(".")
    return json.loads(unb64(header)), json.loads(unb64(claims)), unb64(signature)


class Signer:
    """Signs with a real transit key through the root token (what only Vault's admin can do)."""

    def __init__(self, bao, namespace: str | None, mount: str = "transit", key: str = "token-signing"):
        self.client = bao.root(namespace)
        self.mount, self.key = mount, key

    def __call__(self, message: bytes) -> bytes:
        return transit.sign(self.client, self.mount, self.key, message)


def forge(header: dict, claims: dict | bytes, sign) -> str:
    """A compact JWS with exactly this header and payload, signed by `sign` (or unsigned: None)."""
    payload = b64(claims) if isinstance(claims, bytes) else b64json(claims)
    signing_input = f"{b64json(header)}.{payload}"
    signature = b64(sign(signing_input.encode())) if sign else ""
    return f"{signing_input}.{signature}"


def assert_uniform_401(response) -> None:
    """The one 401 every bad token gets: same status, same body (but the request id), a challenge."""
    assert response.status_code == 401, (response.status_code, response.get_data(as_text=True)[:300])
    body = response.get_json()
    assert set(body) == {*UNIFORM_401, "request_id"}, body
    assert {k: body[k] for k in UNIFORM_401} == UNIFORM_401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def every(api: Api, path: str) -> list[dict]:
    """Every record of a paginated list, following its `Link: <…>; rel="next"` pages."""
    records, url = [], f"{path}{'&' if '?' in path else '?'}limit=1000"
    while url:
        response = api.get(url)
        assert response.status_code == 200, response.get_json()
        records += response.json
        link = response.headers.get("Link", "")
        url = link[link.index("<") + 1 : link.index(">")].removeprefix("/api/v1") if 'rel="next"' in link else None
    return records


def missing(reason: str) -> None:
    """Skip with `reason`, or fail when the services are required (`JETPERO_REQUIRE_SERVICES=1`, CI)."""
    if os.environ.get("JETPERO_REQUIRE_SERVICES") == "1":
        pytest.fail(f"{reason} (JETPERO_REQUIRE_SERVICES=1 requires it)")
    pytest.skip(reason)


def subjects(**kw) -> Subjects:
    """Who a limits check is for: a fresh project and token (or `project=`), with any user or ip."""
    return Subjects(project=kw.pop("project", f"org/p-{uuid.uuid4().hex[:8]}"), token=uuid.uuid4().hex, **kw)
