"""How bench.run starts JetPero as the third target.

``start_jetpero(upstream_url, extra_env)`` starts a throw-away OpenBao (dev mode), bootstraps it, starts
JetPero under gunicorn with the same worker settings as the floor (``-k gevent -w 2``, via
gunicorn.conf.py), creates an org, a project, an `openai`-template provider whose base URL is
the bench upstream (on loopback, so private upstreams are allowed here) and a project token,
then returns ``(base_url, headers, stop_fn)``. ``stop_fn`` stops everything it started, by PID.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import hvac

from app.vault.bootstrap import bootstrap
from tools import openbao, procs
from tools.procs import free_port

ROOT = Path(__file__).resolve().parents[1]
FAKE_KEY = "sk-bench-FAKE-KEY-0000000000000000"


def _call(method: str, url: str, token: str, body: dict | None = None) -> dict:
    request = urllib.request.Request(
        url,
        method=method,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read() or b"{}")


def _wait_ready(url: str, deadline: float) -> None:
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"JetPero did not become ready at {url}")


def start_jetpero(
    upstream_url: str,
    extra_env: dict[str, str] | None = None,
    policy: dict | None = None,
    server: Callable[[int], list[str]] | None = None,
) -> tuple[str, dict[str, str], Callable[[], None]]:
    base, operator, project, stop = start_project(upstream_url, extra_env, server)
    try:
        token = issue(project, operator, policy)
    except BaseException:
        stop(keep_logs=True)
        raise
    return f"{base}/proxy/openai", {"Authorization": f"Bearer {token['token']}"}, stop


def issue(project: str, operator: str, policy: dict | None = None) -> dict:
    """A project token (with its own policy, if given) of the project at admin URL `project`."""
    token = _call(
        "POST", f"{project}/tokens", operator, {"name": "bench", "environment": "development", "expires_in": 3600}
    )
    if policy is not None:
        _call("PUT", f"{project}/tokens/{token['id']}/policy", operator, policy)
    return token


def start_project(
    upstream_url: str, extra_env: dict[str, str] | None = None, server: Callable[[int], list[str]] | None = None
) -> tuple[str, str, str, Callable[..., None]]:
    """JetPero with a project whose `openai` provider is the bench upstream: (base URL, operator
    token, the project's admin URL, stop_fn). `server(port)` is the server's command line serving
    `wsgi:app` on 127.0.0.1:port (default: gunicorn with gunicorn.conf.py, see bench.servers)."""
    workdir = Path(tempfile.mkdtemp(prefix="jetpero-bench-"))
    bao_port, app_port = free_port(), free_port()
    root_token = secrets.token_hex(16)
    bao = openbao.start_dev(bao_port, root_token, workdir / "bao.log")
    processes: list = [bao]
    logs: list = []

    def stop(keep_logs: bool = False) -> None:
        """Stop JetPero and its OpenBao; remove the work directory (logs, AppRole file) unless asked."""
        for process in reversed(processes):
            procs.stop(process)
        processes.clear()
        for handle in logs:
            handle.close()
        logs.clear()
        if keep_logs:
            (workdir / "approle.json").unlink(missing_ok=True)
            print(f"jetpero logs kept in {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)

    try:
        approle = str(workdir / "approle.json")
        bootstrap(hvac.Client(url=openbao.address(bao_port), token=root_token), approle)
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("VAULT_", "BAO_"))},
            "VAULT_ADDR": openbao.address(bao_port),
            "VAULT_APPROLE_FILE": approle,
            "JETPERO_ALLOW_PRIVATE_UPSTREAMS": "true",
            "JETPERO_BIND": f"127.0.0.1:{app_port}",
            "JETPERO_WORKERS": "2",
            "JETPERO_DATABASE_URL": f"sqlite:///{workdir}/jetpero.db",  # its own, removed by stop()
            "JETPERO_COUNTERS_PATH": f"{workdir}/counters.sqlite3",
            **(extra_env or {}),
        }
        operator = subprocess.run(
            [sys.executable, "-m", "flask", "--app", "wsgi", "operator-token", "--name", "bench"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        logs.append(open(workdir / "gunicorn.log", "wb"))  # closed by stop()
        processes.append(
            subprocess.Popen(
                server(app_port)
                if server
                else [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"],
                cwd=ROOT,
                env=env,
                stdout=logs[-1],
                stderr=subprocess.STDOUT,
            )
        )
        base = f"http://127.0.0.1:{app_port}"
        _wait_ready(f"{base}/healthz", time.monotonic() + 90)  # a busy machine starts gunicorn slowly
        api = f"{base}/api/v1"
        _call("POST", f"{api}/orgs", operator, {"slug": "bench"})
        _call("POST", f"{api}/orgs/bench/projects", operator, {"slug": "bench.co"})
        project = f"{api}/orgs/bench/projects/bench.co"
        _call(
            "PUT",
            f"{project}/providers/openai",
            operator,
            {"template": "openai", "api_key": FAKE_KEY, "base_url": upstream_url},
        )
    except BaseException:
        stop(keep_logs=True)
        raise
    return base, operator, project, stop
