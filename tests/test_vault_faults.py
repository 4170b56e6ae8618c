"""Vault stopped, sealed or hung: the admin API fails closed with 503 + Retry-After, then recovers.

These tests stop, seal and SIGSTOP a server, so they run their own persistent OpenBao (raft,
static-key auto-unseal: a restart unseals it and keeps everything), never the session one.
"""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from app.services import changes, provider_keys
from app.vault.bootstrap import bootstrap
from tests.checks import CheckedApi, assert_clean_logs, assert_error, free_port_pair
from tests.helpers import FAKE_KEY, Bao, unique
from tools import openbao, procs

VAULT_TIMEOUT = 1.0
MARGIN = 1.0  # seconds beyond VAULT_TIMEOUT that a 503 may take


@dataclass
class Server:
    data_dir: Path
    port: int
    proc: object = None
    root_token: str = ""

    def start(self) -> None:
        self.proc, self.root_token = openbao.start_persistent(self.data_dir, self.port)

    def stop(self) -> None:
        procs.stop(self.proc)

    def restart(self) -> None:
        self.stop()
        self.start()

    @property
    def bao(self) -> Bao:
        return Bao(addr=openbao.address(self.port), root_token=self.root_token, process=self.proc)


@dataclass
class World:
    server: Server
    app: object
    api: CheckedApi
    org: str
    project: str  # "<org>/<slug>"

    @property
    def provider_path(self) -> str:
        org, slug = self.project.split("/")
        return f"/orgs/{org}/projects/{slug}/providers/openai"


@pytest.fixture(scope="module")
def world(make_app, tmp_path_factory):
    server = Server(tmp_path_factory.mktemp("faults") / "bao", free_port_pair())
    server.start()
    try:
        approle = str(server.data_dir.parent / "approle.json")
        bootstrap(server.bao.root(), approle)
        app = make_app(bao=server.bao, approle_file=approle, VAULT_TIMEOUT=VAULT_TIMEOUT)
        result = app.test_cli_runner().invoke(args=["operator-token", "--name", "faults"])
        assert result.exit_code == 0, result.output
        api = CheckedApi(app.test_client(), result.output.strip())
        org = unique("org")
        assert api.post("/orgs", json={"slug": org}).status_code == 201
        assert api.post(f"/orgs/{org}/projects", json={"slug": "abc.co"}).status_code == 201
        world = World(server, app, api, org, f"{org}/abc.co")
        r = api.put(world.provider_path, json={"template": "openai", "api_key": FAKE_KEY})
        assert r.status_code == 200, r.json
        yield world
    finally:
        os.kill(server.proc.pid, signal.SIGCONT)  # in case a test died while it was stopped
        server.stop()


@pytest.fixture
def fresh_member(world) -> CheckedApi:
    """An admin whose token no worker has seen yet (nothing cached vouches for it)."""
    r = world.api.post(f"/orgs/{world.org}/members", json={"name": unique("m"), "role": "admin"})
    assert r.status_code == 201
    return world.api.as_(r.json["token"])


def _timed_503(call) -> None:
    start = time.monotonic()
    r = call()
    elapsed = time.monotonic() - start
    assert_error(r, 503)
    assert r.json["message"] == "Vault is unavailable; retry later."
    assert elapsed < VAULT_TIMEOUT + MARGIN, f"503 after {elapsed:.2f}s"


def _outage_calls(world: World, member: CheckedApi, *, writes: bool) -> None:
    api = world.api
    _timed_503(lambda: api.get(f"/orgs/{world.org}"))
    _timed_503(lambda: api.get(world.provider_path))
    _timed_503(lambda: member.get(f"/orgs/{world.org}"))  # not cached: Vault needed to vouch for it
    _timed_503(
        lambda: api.put(world.provider_path, json={"template": "openai", "api_key": "sk-fake-during-outage-0000"})
    )
    if writes:
        _timed_503(lambda: api.get("/orgs"))
        _timed_503(lambda: api.post("/orgs", json={"slug": "made-in-outage"}))
        _timed_503(lambda: api.post(f"/orgs/{world.org}/projects", json={"slug": "outage.io"}))
        _timed_503(lambda: api.delete(f"/orgs/{world.org}/projects/abc.co"))
    deadline = time.monotonic() + 1 + VAULT_TIMEOUT + MARGIN  # /readyz caches its answer for 1 s
    while (r := world.app.test_client().get("/readyz")).status_code != 503:
        assert time.monotonic() < deadline, "/readyz still says ready"
        time.sleep(0.1)
    assert r.headers["Retry-After"].isdigit() and r.json["status"] == "unavailable"


def _recovered(world: World, member: CheckedApi) -> None:
    api = world.api
    deadline = time.monotonic() + 10
    while api.get(f"/orgs/{world.org}").status_code != 200:
        assert time.monotonic() < deadline, "the app did not recover"
        time.sleep(0.2)
    assert member.get(f"/orgs/{world.org}").status_code == 200
    assert api.get(world.provider_path).status_code == 200
    # Nothing half-made: what failed during the outage does not exist, and can be made now.
    assert_error(api.get("/orgs/made-in-outage"), 404)
    assert_error(api.get(f"/orgs/{world.org}/projects/outage.io"), 404)
    assert world.server.bao.root(world.org).adapter.list("/v1/sys/namespaces")["data"]["keys"] == ["abc.co/"]
    r = api.put(world.provider_path, json={"template": "openai", "api_key": FAKE_KEY})
    assert r.status_code == 200, r.json
    org, slug = world.project.split("/")
    assert provider_keys.load_with_key(world.app.extensions["jetpero"].vault, org, slug, "openai")[1] == FAKE_KEY
    deadline = time.monotonic() + 5
    while world.app.test_client().get("/readyz").status_code != 200:
        assert time.monotonic() < deadline, "readiness did not come back"
        time.sleep(0.2)
    assert world.app.extensions["jetpero"]._thread.is_alive()  # the poller survived


def test_hung_vault_sigstop(world, fresh_member, caplog):
    os.kill(world.server.proc.pid, signal.SIGSTOP)
    try:
        _outage_calls(world, fresh_member, writes=False)
    finally:
        os.kill(world.server.proc.pid, signal.SIGCONT)
    _recovered(world, fresh_member)
    assert_clean_logs(caplog.records)


def test_sealed_vault(world, fresh_member, caplog):
    world.server.bao.root().sys.seal()
    try:
        assert openbao.health(world.server.port)[1]["sealed"] is True
        _outage_calls(world, fresh_member, writes=True)
        assert world.app.test_client().get("/readyz").json["checks"]["vault"] == "sealed"
    finally:
        world.server.restart()  # static-key auto-unseal on start
    _recovered(world, fresh_member)
    assert_clean_logs(caplog.records)


def test_stopped_vault(world, fresh_member, caplog):
    world.server.stop()
    try:
        _outage_calls(world, fresh_member, writes=True)
        assert world.app.test_client().get("/readyz").json["checks"]["vault"] == "unreachable"
    finally:
        world.server.start()
    _recovered(world, fresh_member)
    assert_clean_logs(caplog.records)


def test_change_feed_outlives_vault_request_limits(world):
    """OpenBao refuses request bodies with over 1000 JSON strings: a long-lived feed must still write."""
    vault = world.app.extensions["jetpero"].vault
    first, _ = changes.read(vault)
    for _ in range(150):  # a list of events broke at the 111th
        changes.publish(vault, "provider-changed", org=world.org, project="abc.co", provider="x" * 20)
    seq, events = changes.read(vault)
    assert seq == first + 150 and events[-1]["seq"] == seq
    assert len(events) == min(seq, changes.KEEP)
    r = world.api.put(world.provider_path, json={"template": "openai", "api_key": FAKE_KEY})
    assert r.status_code == 200, r.json  # a control-plane write publishes one more event
    world.app.extensions["jetpero"].sync_once()
