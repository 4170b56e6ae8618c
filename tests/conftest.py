"""Fixtures: a real OpenBao (dev mode) started for the session, JetPero bootstrapped against it.

Composable like flaskr's: `bao` -> `config` -> `app` -> `client` -> `api` (an operator) ->
`org` -> `project` -> `provider`. Only fixtures hold the root token; the app runs under its
own least-privilege AppRole from `vault-policies/`.
"""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass

import hvac
import pytest

from app import create_app
from app.vault.bootstrap import bootstrap
from config import Config
from tests.servers import LiveServer, free_port
from tests.upstream import FakeUpstream
from tools import openbao

pytest_plugins = ["tests.redis_fixtures"]

FAKE_KEY = "sk-fake-TESTKEY-0000000000000000-abcd"  # obviously fake provider key


@dataclass
class Bao:
    addr: str
    root_token: str
    process: object

    def root(self, namespace: str | None = None) -> hvac.Client:
        return hvac.Client(url=self.addr, token=self.root_token, namespace=namespace)


@pytest.fixture(scope="session")
def bao(tmp_path_factory):
    port = free_port()
    token = secrets.token_hex(16)
    log = tmp_path_factory.mktemp("bao") / "bao.log"
    process = openbao.start_dev(port, token, log)
    try:
        yield Bao(addr=openbao.address(port), root_token=token, process=process)
    finally:
        openbao.stop(process)


@pytest.fixture(scope="session")
def approle_file(bao, tmp_path_factory):
    path = str(tmp_path_factory.mktemp("creds") / "approle.json")
    bootstrap(bao.root(), path)
    return path


def make_config(bao: Bao, approle_file: str, **overrides) -> Config:
    environ = {
        "VAULT_ADDR": bao.addr,
        "VAULT_APPROLE_FILE": approle_file,
        "VAULT_TIMEOUT": "2",
        "JETPERO_ALLOW_PRIVATE_UPSTREAMS": "true",  # the fake upstream is on loopback
        "JETPERO_SYNC_INTERVAL": "0.5",
        "JETPERO_UPSTREAM_READ_TIMEOUT": "5",
    }
    environ.update({k: str(v) for k, v in overrides.items()})
    return Config.from_env(environ)


@pytest.fixture(scope="session")
def config(bao, approle_file):
    return make_config(bao, approle_file)


@pytest.fixture(scope="session")
def app(config):
    app = create_app(config)
    yield app
    app.extensions["jetpero"].stop()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture(scope="module")
def live(app):
    """The app served over real HTTP (a threaded server), for the official SDKs."""
    server = LiveServer(app)
    yield server
    server.stop()


class Api:
    """The admin API as one bearer sees it."""

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
        return Api(self.client, token)


@pytest.fixture(scope="session")
def operator_token(app):
    result = app.test_cli_runner().invoke(args=["operator-token", "--name", "test-operator"])
    assert result.exit_code == 0, result.output
    return result.output.strip()


@pytest.fixture
def api(client, operator_token):
    return Api(client, operator_token)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def org(api):
    slug = unique("org")
    response = api.post("/orgs", json={"slug": slug, "display_name": "Test org"})
    assert response.status_code == 201, response.json
    return slug


@pytest.fixture
def project(api, org):
    slug = unique("proj") + ".co"
    response = api.post(f"/orgs/{org}/projects", json={"slug": slug, "allowed_origins": ["https://app.example.com"]})
    assert response.status_code == 201, response.json
    return f"{org}/{slug}"


@pytest.fixture
def upstream():
    with FakeUpstream() as fake:
        yield fake


@pytest.fixture
def provider(api, project, upstream):
    """An `openai` provider in `project` pointing at the fake upstream."""
    response = api.put(
        f"{project_path(project)}/providers/openai",
        json={"template": "openai", "api_key": FAKE_KEY, "base_url": upstream.url},
    )
    assert response.status_code == 200, response.json
    return "openai"


def project_path(project: str) -> str:
    org, slug = project.split("/")
    return f"/orgs/{org}/projects/{slug}"


@pytest.fixture
def project_token(api, project, provider):
    response = api.post(
        f"{project_path(project)}/tokens", json={"name": "ci", "environment": "development", "expires_in": 3600}
    )
    assert response.status_code == 201, response.json
    return response.json["token"]
