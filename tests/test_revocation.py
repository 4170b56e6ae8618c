"""Revocation and change propagation across workers, and failing closed when Vault is gone.

A second `create_app(config)` is another worker: its own caches, its own change-feed poller.
"""

from __future__ import annotations

import os
import secrets
import signal
import time

import pytest

from app.vault.bootstrap import bootstrap
from tests.checks import CheckedApi, free_port_pair
from tests.helpers import (
    FAKE_KEY,
    Bao,
    Project,
    assert_uniform_401,
    bearer,
    create_project,
    issue_token,
    put_provider,
)
from tests.upstream import FakeUpstream
from tools import openbao, procs

CHAT = "/proxy/openai/v1/chat/completions"
BOUND = 2.0  # seconds: the documented revocation bound on other workers
NEW_KEY = "sk-fake-ROTATED-2222222222222222-efgh"


@pytest.fixture
def proj(project) -> Project:
    return Project(*project.split("/"))


@pytest.fixture
def second_worker(make_app):
    """Another worker, polling the change feed every second."""
    return make_app(JETPERO_SYNC_INTERVAL=1).test_client()


def _call(client, token):
    return client.post(CHAT, headers=bearer(token), json={"model": "m", "messages": []})


def _until(predicate, timeout: float) -> float | None:
    """Seconds until `predicate()` held, polling every 20 ms; None if it never did within `timeout`."""
    start = time.monotonic()
    while time.monotonic() - start <= timeout:
        if predicate():
            return time.monotonic() - start
        time.sleep(0.02)
    return None


def test_revoked_token_refused_at_once_here_and_within_2s_elsewhere(
    api, client, proj, provider, project_token, upstream, second_worker
):
    token_id = api.get(f"{proj.path}/tokens").json[0]["id"]
    assert _call(client, project_token).status_code == 200  # cached on both workers
    assert _call(second_worker, project_token).status_code == 200

    assert api.delete(f"{proj.path}/tokens/{token_id}").status_code == 204
    revoked_at = time.monotonic()
    assert_uniform_401(_call(client, project_token))  # the revoking worker: at once
    took = _until(lambda: _call(second_worker, project_token).status_code == 401, timeout=BOUND + 3)
    assert took is not None, "the other worker never refused the revoked token"
    assert time.monotonic() - revoked_at <= BOUND, f"the other worker took {took:.2f}s"
    assert_uniform_401(_call(second_worker, project_token))
    count = len(upstream.requests)
    for worker in (client, second_worker):
        assert_uniform_401(_call(worker, project_token))
    assert len(upstream.requests) == count


def test_other_tokens_of_the_project_keep_working_after_a_revocation(api, client, proj, provider, second_worker):
    keep, drop = issue_token(api, proj), issue_token(api, proj)
    for worker in (client, second_worker):
        assert _call(worker, keep["token"]).status_code == 200
    api.delete(f"{proj.path}/tokens/{drop['id']}")
    time.sleep(1.2)
    for worker in (client, second_worker):
        assert _call(worker, keep["token"]).status_code == 200
        assert_uniform_401(_call(worker, drop["token"]))


def test_deleted_projects_tokens_fail_everywhere(api, client, proj, provider, project_token, upstream, second_worker):
    assert _call(client, project_token).status_code == 200
    assert _call(second_worker, project_token).status_code == 200
    assert api.delete(f"/orgs/{proj.org}/projects/{proj.slug}").status_code == 204
    deleted_at = time.monotonic()
    assert_uniform_401(_call(client, project_token))
    took = _until(lambda: _call(second_worker, project_token).status_code != 200, timeout=BOUND + 3)
    assert took is not None and time.monotonic() - deleted_at <= BOUND
    assert_uniform_401(_call(second_worker, project_token))
    count = len(upstream.requests)
    assert_uniform_401(_call(client, project_token))
    assert len(upstream.requests) == count


def test_deleted_org_tokens_fail(api, client, proj, provider, project_token, upstream):
    assert _call(client, project_token).status_code == 200
    assert api.delete(f"/orgs/{proj.org}?cascade=true").status_code == 204
    assert_uniform_401(_call(client, project_token))


def test_removed_providers_tokens_fail_with_404(api, client, proj, provider, upstream, second_worker):
    token = issue_token(api, proj, scope=["openai"])["token"]
    assert _call(client, token).status_code == 200
    assert _call(second_worker, token).status_code == 200
    assert api.delete(f"{proj.path}/providers/openai").status_code == 204
    removed_at = time.monotonic()
    count = len(upstream.requests)
    assert _call(client, token).status_code == 404  # at once here, and nothing forwarded
    assert len(upstream.requests) == count
    took = _until(lambda: _call(second_worker, token).status_code == 404, timeout=BOUND + 3)
    assert took is not None and time.monotonic() - removed_at <= BOUND
    count = len(upstream.requests)
    assert _call(second_worker, token).status_code == 404
    assert len(upstream.requests) == count


def test_provider_key_change_reaches_every_worker(api, client, proj, provider, project_token, upstream, second_worker):
    assert _call(second_worker, project_token).status_code == 200
    assert upstream.requests[-1].header("authorization") == f"Bearer {FAKE_KEY}"
    put_provider(api, proj, "openai", template="openai", api_key=NEW_KEY, base_url=upstream.url)
    changed_at = time.monotonic()
    assert _call(client, project_token).status_code == 200
    assert upstream.requests[-1].header("authorization") == f"Bearer {NEW_KEY}"  # at once here

    def rotated() -> bool:
        assert _call(second_worker, project_token).status_code == 200
        return upstream.requests[-1].header("authorization") == f"Bearer {NEW_KEY}"

    took = _until(rotated, timeout=BOUND + 3)
    assert took is not None and time.monotonic() - changed_at <= BOUND


def test_base_url_change_reaches_every_worker(api, proj, provider, project_token, upstream, second_worker):
    assert _call(second_worker, project_token).status_code == 200
    with FakeUpstream() as moved:
        put_provider(api, proj, "openai", template="openai", api_key=FAKE_KEY, base_url=moved.url)
        changed_at = time.monotonic()
        took = _until(lambda: _call(second_worker, project_token).status_code == 200 and moved.requests, BOUND + 3)
        assert took is not None and time.monotonic() - changed_at <= BOUND


# --------------------------------------------------------------------------- Vault down


@pytest.fixture
def own_bao(tmp_path):
    """A separate persistent OpenBao (raft, static auto-unseal) that this test may stop and restart."""
    port = free_port_pair()
    data_dir = tmp_path / "bao"
    process, root_token = openbao.start_persistent(data_dir, port)
    state = {"process": process}
    try:
        yield state, Bao(addr=openbao.address(port), root_token=root_token, process=process), data_dir, port
    finally:
        current = state["process"]
        if current.poll() is None:
            os.kill(current.pid, signal.SIGCONT)
        procs.stop(current)


def test_vault_down_or_hung_fails_closed_and_recovers(own_bao, make_app, tmp_path, upstream):
    state, bao, data_dir, port = own_bao
    approle = str(tmp_path / "approle.json")
    bootstrap(bao.root(), approle)
    app = make_app(bao=bao, approle_file=approle, JETPERO_SYNC_INTERVAL="0.5", VAULT_TIMEOUT="1")
    try:
        result = app.test_cli_runner().invoke(args=["operator-token", "--name", secrets.token_hex(4)])
        assert result.exit_code == 0, result.output
        client = app.test_client()
        api = CheckedApi(client, result.output.strip())
        proj = create_project(api)
        put_provider(api, proj, "openai", template="openai", api_key=FAKE_KEY, base_url=upstream.url)
        token = issue_token(api, proj)["token"]
        assert _call(client, token).status_code == 200
        stale_after = max(2.0, 3 * 0.5)

        def fails_closed(bound: float) -> None:
            took = _until(lambda: _call(client, token).status_code == 503, timeout=bound + 3)
            assert took is not None and took <= bound, f"still serving {took}s after Vault went away"
            count = len(upstream.requests)
            for _ in range(3):
                response = _call(client, token)
                assert response.status_code == 503 and response.headers["Retry-After"].isdigit()
                assert response.json["code"] == 503
            assert len(upstream.requests) == count  # nothing forwarded
            assert client.get("/readyz").status_code == 503

        # Stopped.
        procs.stop(state["process"])
        fails_closed(stale_after + 1.0)
        state["process"], _ = openbao.start_persistent(data_dir, port)
        assert _until(lambda: _call(client, token).status_code == 200, timeout=10) is not None

        # Hung (SIGSTOP): calls give up after VAULT_TIMEOUT.
        os.kill(state["process"].pid, signal.SIGSTOP)
        try:
            fails_closed(stale_after + 1.0 + 1.0)
        finally:
            os.kill(state["process"].pid, signal.SIGCONT)
        assert _until(lambda: _call(client, token).status_code == 200, timeout=10) is not None
    finally:
        app.extensions["jetpero"].stop()
