"""The whole docker compose stack, brought up by pytest-docker (`make test-compose`).

OpenBao, the `init` job, the app and the HTTPS front (`tls` profile) with a fake provider
added on the compose network (tests/compose-upstream.yml): an operator token from the app
container, then an org, a project, a key and a proxied call through Caddy that arrives with
the key injected. Needs a Docker engine; skipped with that reason elsewhere (CI without one
validates the file with `docker-compose config`: `make compose-check`).
"""

from __future__ import annotations

import json
import os
import shlex
import ssl
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.helpers import FAKE_KEY
from tests.servers import free_port, self_signed_cert

pytest.importorskip("pytest_docker", reason="pytest-docker is not installed (pip install pytest-docker)")

ROOT = Path(__file__).resolve().parents[1]
PROJECT = "jetpero-compose-test"
SPOOFED_IP = "198.51.100.66"


def _no_engine() -> str | None:
    try:
        result = subprocess.run(["docker", "info"], capture_output=True, timeout=30, check=False)  # noqa: S607
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"no Docker engine ({type(exc).__name__} running `docker info`)"
    return None if result.returncode == 0 else "no Docker engine (`docker info` failed)"


_NO_ENGINE = _no_engine()
pytestmark = pytest.mark.skipif(bool(_NO_ENGINE), reason=_NO_ENGINE or "")


@pytest.fixture(scope="session")
def compose_env(tmp_path_factory) -> dict[str, str]:
    """The variables the stack runs with: a fresh unseal key and certificate, free host ports."""
    work = tmp_path_factory.mktemp("compose")
    key = work / "unseal.key"
    key.write_bytes(os.urandom(32))
    tls_dir = work / "tls"
    tls_dir.mkdir()
    self_signed_cert(tls_dir)  # cert.pem, key.pem for 127.0.0.1
    env = {
        "JETPERO_UNSEAL_KEY_FILE": str(key),
        "JETPERO_TLS_DIR": str(tls_dir),
        "JETPERO_TLS_HOST": "127.0.0.1",
        "JETPERO_PORT": str(free_port()),
        "JETPERO_HTTPS_PORT": str(free_port()),
        "OPENBAO_PORT": str(free_port()),
        "JETPERO_PUBLISH_ADDR": "127.0.0.1",
        "JETPERO_TRUSTED_PROXIES": "1",
        "JETPERO_ALLOW_PRIVATE_UPSTREAMS": "true",  # the fake provider is on the compose network
        "COMPOSE_PROFILES": "tls",
    }
    saved = {name: os.environ.get(name) for name in env}
    os.environ.update(env)  # pytest-docker runs `docker compose` with this process's environment
    yield env
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@pytest.fixture(scope="session")
def docker_compose_file(compose_env) -> list[str]:
    return [str(ROOT / "docker-compose.yml"), str(ROOT / "tests" / "compose-upstream.yml")]


@pytest.fixture(scope="session")
def docker_compose_project_name() -> str:
    return PROJECT


@pytest.fixture(scope="session")
def docker_setup() -> list[str]:
    return ["up --build -d"]  # not --wait: `init` is a one-shot job that exits


@pytest.fixture(scope="session")
def docker_cleanup() -> list[str]:
    return ["down -v"]


def _compose(docker_compose_file: list[str], *args: str) -> str:
    files = [part for path in docker_compose_file for part in ("-f", path)]
    command = ["docker", "compose", "-p", PROJECT, *files, *args]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)  # noqa: S603
    assert result.returncode == 0, f"{shlex.join(command)}: {result.stderr}"
    return result.stdout


def _call(url: str, method: str = "GET", token: str | None = None, body: dict | None = None, **kw) -> tuple[int, dict]:
    headers = {"Content-Type": "application/json", **kw.pop("headers", {})}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers=headers)  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=30, **kw) as resp:  # noqa: S310
            return resp.status, json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


@pytest.fixture(scope="session")
def stack(docker_services, docker_compose_file, compose_env) -> str:
    app = f"http://127.0.0.1:{compose_env['JETPERO_PORT']}"

    def ready() -> bool:
        try:
            return _call(f"{app}/readyz")[0] == 200
        except OSError:
            return False

    docker_services.wait_until_responsive(check=ready, timeout=300.0, pause=2.0)
    return app


def test_project_key_and_proxied_call_through_the_https_front(stack, docker_compose_file, compose_env):
    operator = _compose(docker_compose_file, "exec", "-T", "app", "flask", "--app", "wsgi", "operator-token").strip()
    api = f"{stack}/api/v1"
    assert _call(f"{api}/orgs", "POST", operator, {"slug": "abc"})[0] == 201
    assert _call(f"{api}/orgs/abc/projects", "POST", operator, {"slug": "abc.co"})[0] == 201
    status, _ = _call(
        f"{api}/orgs/abc/projects/abc.co/providers/openai",
        "PUT",
        operator,
        {"template": "openai", "api_key": FAKE_KEY, "base_url": "http://upstream:8080"},
    )
    assert status == 200
    status, issued = _call(
        f"{api}/orgs/abc/projects/abc.co/tokens",
        "POST",
        operator,
        {"name": "compose", "environment": "development", "expires_in": 3600},
    )
    assert status == 201

    https = f"https://127.0.0.1:{compose_env['JETPERO_HTTPS_PORT']}"
    context = ssl.create_default_context(cafile=str(Path(compose_env["JETPERO_TLS_DIR"]) / "cert.pem"))
    status, answer = _call(
        f"{https}/proxy/openai/v1/chat/completions",
        "POST",
        issued["token"],
        {"model": "m", "messages": []},
        headers={"X-Forwarded-For": SPOOFED_IP},
        context=context,
    )
    assert status == 200, answer
    assert answer == {"authorization": f"Bearer {FAKE_KEY}", "path": "/v1/chat/completions"}

    logs = _compose(docker_compose_file, "logs", "--no-log-prefix", "app")
    proxied = [json.loads(line) for line in logs.splitlines() if '"route": "/proxy/' in line]
    assert proxied and proxied[-1]["status"] == 200
    assert proxied[-1]["client_ip"] not in (None, SPOOFED_IP)  # Caddy's view of the client, not the header
    assert FAKE_KEY not in logs and issued["token"] not in logs


def test_init_reruns_without_the_root_token(stack, docker_compose_file):
    """A later `up`: the root token file is moved away and `init` still bootstraps."""
    init_dir = "/var/lib/jetpero-init"
    _compose(
        docker_compose_file,
        "run",
        "--rm",
        "--no-deps",
        "--entrypoint",
        "sh",
        "init",
        "-c",
        f"mv {init_dir}/openbao-init.json {init_dir}/offline.json",
    )
    try:
        output = _compose(docker_compose_file, "run", "--rm", "--no-deps", "init")
        assert "bootstrap complete" in output
    finally:
        _compose(
            docker_compose_file,
            "run",
            "--rm",
            "--no-deps",
            "--entrypoint",
            "sh",
            "init",
            "-c",
            f"mv {init_dir}/offline.json {init_dir}/openbao-init.json",
        )
