"""`make run`'s operator token (re-minted once it runs out) and `make operator-vault-token`."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import hvac
import pytest

from app.vault.bootstrap import OPERATOR_POLICY, bootstrap
from tests.checks import free_port_pair
from tools import openbao, operator_token, procs

ROOT_DIR = Path(__file__).resolve().parents[1]


def _unsigned(claims: dict) -> str:
    """A JWS-shaped token with these claims and a junk signature: `fresh` never checks it."""

    def part(value: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'Ed25519'})}.{part(claims)}.c2ln"


@pytest.mark.parametrize(
    ("claims", "left"),
    [({"exp": 1_000}, 400.0), ({"exp": 500}, -100.0), ({"sub": "x"}, None), ({"exp": "soon"}, None)],
)
def test_seconds_left_reads_exp_without_verifying(claims, left):
    assert operator_token.seconds_left(_unsigned(claims), now=600) == left


@pytest.mark.parametrize("text", ["", "not a token", "a.b", "a.b.c"])
def test_unreadable_token_is_not_fresh(tmp_path, text):
    path = tmp_path / "operator-token"
    path.write_text(text)
    assert operator_token.seconds_left(text) is None
    assert not operator_token.is_fresh(path)
    assert not operator_token.is_fresh(tmp_path / "missing")


def test_fresh_means_more_than_min_left(tmp_path):
    path = tmp_path / "operator-token"
    path.write_text(_unsigned({"exp": time.time() + 7200}) + "\n")
    assert operator_token.is_fresh(path, min_left=3600)
    assert not operator_token.is_fresh(path, min_left=10800)  # about to expire
    path.write_text(_unsigned({"exp": time.time() - 1}))
    assert not operator_token.is_fresh(path, min_left=0)  # expired


def _cli_env(bao, approle_file, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VAULT_", "BAO_", "JETPERO_"))}
    env.update(VAULT_ADDR=bao.addr, VAULT_APPROLE_FILE=approle_file, **extra)
    return env


def _ensure(env: dict[str, str], path) -> subprocess.CompletedProcess:
    return subprocess.run(  # noqa: S603
        [sys.executable, "-m", "tools.operator_token", "ensure", str(path)],
        cwd=ROOT_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_ensure_keeps_a_fresh_token_and_remints_an_expiring_one(bao, approle_file, api, tmp_path):
    path = tmp_path / "operator-token"
    env = _cli_env(bao, approle_file)

    first = _ensure(env, path)
    assert first.returncode == 0 and "minted" in first.stderr, first.stderr
    token = path.read_text().strip()
    assert path.stat().st_mode & 0o777 == 0o600
    assert operator_token.seconds_left(token) > 86400
    assert api.as_(token).get("/orgs").status_code == 200

    again = _ensure(env, path)
    assert again.returncode == 0 and "still valid" in again.stderr
    assert path.read_text().strip() == token

    # A real operator token with one minute left (what an old .data/operator-token becomes).
    short = subprocess.run(  # noqa: S603
        [sys.executable, "-m", "flask", "--app", "wsgi", "operator-token", "--name", "short"],
        cwd=ROOT_DIR,
        env=_cli_env(bao, approle_file, JETPERO_ADMIN_TOKEN_TTL="60"),
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout.strip()
    assert api.as_(short).get("/orgs").status_code == 200
    path.write_text(short + "\n")
    renewed = _ensure(env, path)
    assert renewed.returncode == 0 and "minted" in renewed.stderr
    fresh = path.read_text().strip()
    assert fresh not in (short, token) and operator_token.seconds_left(fresh) > 86400
    assert api.as_(fresh).get("/orgs").status_code == 200


def test_ensure_failure_names_the_cause_and_keeps_the_file(tmp_path):
    path = tmp_path / "operator-token"
    path.write_text("stale")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VAULT_", "BAO_", "JETPERO_"))}
    result = _ensure(env, path)
    assert result.returncode == 1 and "VAULT_ADDR" in result.stderr and "Traceback" not in result.stderr
    assert path.read_text() == "stale"


def test_make_run_uses_ensure():
    run_sh = (ROOT_DIR / "tools" / "run.sh").read_text()
    assert 'tools.operator_token ensure "$DATA/operator-token"' in run_sh


def test_operator_vault_token_works_as_written_after_make_run(tmp_path):
    data = tmp_path / "data"
    port = free_port_pair()
    proc, root_token = openbao.start_persistent(data, port)
    try:
        bootstrap(hvac.Client(url=openbao.address(port), token=root_token), str(data / "approle.json"))
        env = {k: v for k, v in os.environ.items() if not k.startswith(("VAULT_", "BAO_"))}
        result = subprocess.run(  # noqa: S603
            [str(ROOT_DIR / "tools" / "operator-vault-token.sh"), str(data), "2h"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        token = result.stdout.strip()
        info = hvac.Client(url=openbao.address(port), token=token).auth.token.lookup_self()["data"]
        assert OPERATOR_POLICY in info["policies"] and "root" not in info["policies"]
        assert 0 < info["ttl"] <= 7200
    finally:
        procs.stop(proc)
    stopped = subprocess.run(  # noqa: S603
        [str(ROOT_DIR / "tools" / "operator-vault-token.sh"), str(data)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert stopped.returncode == 1 and "make run" in stopped.stderr
    missing = subprocess.run(  # noqa: S603
        [str(ROOT_DIR / "tools" / "operator-vault-token.sh"), str(tmp_path / "none")],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert missing.returncode == 1 and "run `make run` first" in missing.stderr


def test_makefile_target_passes_the_local_data_dir():
    makefile = (ROOT_DIR / "Makefile").read_text()
    assert "operator-vault-token: install\n\t@./tools/operator-vault-token.sh $(DATA) $(TTL)" in makefile
