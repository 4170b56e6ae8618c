"""Fixtures: a real OpenBao (dev mode) started for the session, JetPero bootstrapped against it.

Composable like flaskr's: `bao` -> `config` -> `app` -> `client` -> `api` (an operator, every
response checked by `tests.checks`) -> `org` -> `project` -> `provider`. `make_app(**overrides)`
builds further apps (other workers, other configs, other Vaults). Only fixtures hold the root
token; the app runs under its own least-privilege AppRole from `vault-policies/`.
Helpers and constants live in `tests.helpers`; nothing imports this module.
"""

from __future__ import annotations

import secrets

import pytest

from app import create_app
from app.services import audit
from app.vault.bootstrap import bootstrap
from tests.checks import SENT_TOKENS, CheckedApi, assert_nothing_stored
from tests.helpers import FAKE_KEY, Bao, make_config, project_path, unique
from tests.servers import LiveServer
from tests.upstream import FakeUpstream
from tools import openbao, procs

pytest_plugins = ["tests.browser_fixtures", "tests.db_fixtures", "tests.redis_fixtures"]


@pytest.fixture(scope="session")
def bao(tmp_path_factory):
    port = procs.free_port()
    token = secrets.token_hex(16)
    log = tmp_path_factory.mktemp("bao") / "bao.log"
    process = openbao.start_dev(port, token, log)
    try:
        yield Bao(addr=openbao.address(port), root_token=token, process=process)
    finally:
        procs.stop(process)


@pytest.fixture(scope="session")
def approle_file(bao, tmp_path_factory):
    path = str(tmp_path_factory.mktemp("creds") / "approle.json")
    bootstrap(bao.root(), path)
    return path


@pytest.fixture(scope="session")
def config(bao, approle_file):
    return make_config(bao, approle_file)


@pytest.fixture(scope="session")
def app(config):
    app = create_app(config)
    yield app
    app.extensions["jetpero"].stop()  # the usage writer flushes what it holds
    assert_nothing_stored(app.extensions["jetpero.db"])  # after the whole session: no secret in any row


@pytest.fixture(scope="module")
def make_app(bao, approle_file):
    """`make_app(bao=None, approle_file=None, **config_overrides)`: another app (another worker),
    on the session's Vault unless given another; every one is stopped at the end of the module."""
    made = []

    def build(*, bao: Bao = bao, approle_file: str = approle_file, **overrides):
        built = create_app(make_config(bao, approle_file, **overrides))
        made.append(built)
        return built

    yield build
    for built in made:
        built.extensions["jetpero"].stop()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture(scope="module")
def live(app):
    """The app served over real HTTP (a threaded server), for the official SDKs."""
    server = LiveServer(app)
    yield server
    server.stop()


@pytest.fixture
def trail(app):
    """Bind the app's audit trail for services called without a request (as a job would):
    their changes are recorded, not refused. Yields the database engine."""
    engine = app.extensions["jetpero.db"]
    with audit.bound(engine, audit.Context(request_id="pytest", user_agent="pytest")):
        yield engine


@pytest.fixture(scope="session")
def operator_token(app):
    result = app.test_cli_runner().invoke(args=["operator-token", "--name", "test-operator"])
    assert result.exit_code == 0, result.output
    SENT_TOKENS.add(result.output.strip())
    return result.output.strip()


@pytest.fixture
def api(client, operator_token):
    return CheckedApi(client, operator_token)


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


@pytest.fixture
def project_token(api, project, provider):
    response = api.post(
        f"{project_path(project)}/tokens", json={"name": "ci", "environment": "development", "expires_in": 3600}
    )
    assert response.status_code == 201, response.json
    return response.json["token"]
