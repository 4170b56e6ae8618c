"""The compose `init` job needs the root token once: later runs bootstrap under jetpero-bootstrap.

Runs deploy/init.sh itself (as the `init` container does) against a real, uninitialised
persistent OpenBao, and `bootstrap()` under a token holding only vault-policies/jetpero-bootstrap.hcl.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import hvac
import hvac.exceptions as hx
import pytest

from app.vault import policies
from app.vault.bootstrap import bootstrap
from tests.checks import free_port_pair
from tools import openbao, procs

ROOT = Path(__file__).resolve().parents[1]
BOOTSTRAP_POLICY = "jetpero-bootstrap"


def _bootstrap_token(root: hvac.Client) -> hvac.Client:
    policies.write(root, BOOTSTRAP_POLICY)
    token = root.auth.token.create(policies=[BOOTSTRAP_POLICY], no_default_policy=True, ttl="10m")["auth"]
    return hvac.Client(url=root.url, token=token["client_token"])


def test_bootstrap_reruns_under_the_bootstrap_policy_only(bao, approle_file, tmp_path):
    narrow = _bootstrap_token(bao.root())
    info = bao.root().auth.token.lookup(narrow.token)["data"]
    assert info["policies"] == [BOOTSTRAP_POLICY]
    approle = str(tmp_path / "approle.json")
    done = bootstrap(narrow, approle)  # an upgrade: policies rewritten, fresh app credentials
    assert done == ["wrote policies", "issued app credentials"]
    creds = json.loads(Path(approle).read_text())
    login = hvac.Client(url=bao.addr).auth.approle.login(creds["role_id"], creds["secret_id"], use_token=False)
    assert "jetpero-app" in login["auth"]["policies"]
    assert bootstrap(narrow, approle) == ["wrote policies"]  # idempotent: the file still works


def test_bootstrap_policy_grants_nothing_more(bao, project, tmp_path):
    narrow = _bootstrap_token(bao.root())
    org, slug = project.split("/")
    refused = [
        lambda: policies.write(narrow, BOOTSTRAP_POLICY),  # cannot widen itself
        lambda: narrow.sys.create_or_update_acl_policy(name="root-like", policy='path "*" { capabilities = ["sudo"] }'),
        lambda: narrow.sys.create_namespace("jetpero-evil"),
        lambda: narrow.sys.list_namespaces(),
        lambda: narrow.auth.token.create(policies=["jetpero-app"]),
        lambda: narrow.secrets.kv.v2.list_secrets(path="", mount_point="jetpero-kv"),
        lambda: hvac.Client(url=bao.addr, token=narrow.token, namespace=project).secrets.kv.v2.list_secrets(
            path="", mount_point="kv"
        ),
        lambda: hvac.Client(url=bao.addr, token=narrow.token, namespace=org).sys.list_mounted_secrets_engines(),
        lambda: narrow.secrets.transit.sign_data(name="admin", hash_input="eA==", mount_point="jetpero-transit"),
        lambda: narrow.sys.disable_secrets_engine("jetpero-kv"),
        lambda: narrow.auth.approle.create_or_update_approle("other", token_policies=["jetpero-app"]),
        lambda: narrow.sys.read_raft_config(),
    ]
    for call in refused:
        with pytest.raises(hx.Forbidden):
            call()
    assert slug  # the project exists: the refusals above are not 404s in disguise


def _init_env(port: int, work: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VAULT_", "BAO_", "JETPERO_"))}
    env.update(
        PATH=f"{Path(openbao.bao_binary()).parent}:{ROOT / '.venv' / 'bin'}:{env.get('PATH', '')}",
        BAO_ADDR=openbao.address(port),
        JETPERO_INIT_DIR=str(work / "init"),
        VAULT_APPROLE_FILE=str(work / "approle" / "approle.json"),
        JETPERO_INIT_WAIT="60",
    )
    return env


def _run_init(env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(  # noqa: S603
        ["/bin/sh", str(ROOT / "deploy" / "init.sh")],  # noqa: S607
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def test_init_needs_the_root_token_on_the_first_run_only(tmp_path):
    port = free_port_pair()
    proc, root_token = openbao.start_persistent(tmp_path / "bao", port, initialise=False)
    assert root_token == ""
    try:
        env = _init_env(port, tmp_path)
        first = _run_init(env)
        assert first.returncode == 0, first.stderr + first.stdout
        assert "bootstrap complete" in first.stdout
        init_file = tmp_path / "init" / "openbao-init.json"
        boot_file = tmp_path / "init" / "bootstrap-approle.json"
        for secret in (init_file, boot_file, Path(env["VAULT_APPROLE_FILE"])):
            assert secret.stat().st_mode & 0o777 == 0o600, secret
        root = hvac.Client(url=openbao.address(port), token=json.loads(init_file.read_text())["root_token"])
        role = root.auth.approle.read_role("jetpero-bootstrap")["data"]
        assert role["token_policies"] == [BOOTSTRAP_POLICY] and role["token_no_default_policy"] is True

        # After the first start: the root token goes offline, the root token is even revoked.
        offline = tmp_path / "offline.json"
        init_file.rename(offline)
        root.auth.token.revoke_self()
        Path(env["VAULT_APPROLE_FILE"]).unlink()  # and the app's credentials must be re-issued
        second = _run_init(env)
        assert second.returncode == 0, second.stderr + second.stdout
        assert "creating the jetpero-bootstrap" not in second.stderr
        assert "issued app credentials" in second.stdout and "bootstrap complete" in second.stdout
        creds = json.loads(Path(env["VAULT_APPROLE_FILE"]).read_text())
        login = hvac.Client(url=openbao.address(port)).auth.approle.login(
            creds["role_id"], creds["secret_id"], use_token=False
        )
        assert "jetpero-app" in login["auth"]["policies"]

        # Without working bootstrap credentials and without the root token, it says what to do.
        boot_file.write_text('{"role_id": "x", "secret_id": "y"}')
        third = _run_init(env)
        assert third.returncode == 1 and "set VAULT_TOKEN" in third.stderr
    finally:
        procs.stop(proc)
