"""Exchanges per second, and the Vault calls each costs (`python -m bench.exchange`, ~1 minute).

Starts a throw-away OpenBao (raft storage, a file audit device) and a local identity provider (an Ed25519 or RS256 key,
its JWKS on loopback); sets up an org, a project, a provider and the IdP in-process (the admin
writes go to the same OpenBao and the same SQLite database); then measures
  1. in-process, one thread: exchanges back to back, and the Vault calls they made (counted by
     the Vault adapter's observer, the change-feed poller's own calls left out);
  2. JetPero under gunicorn (2 gevent workers, as `make run`): a closed loop of `--concurrency`
     clients posting one IdP JWT to `/exchange/...` for `--seconds`, and OpenBao's own count of
     the requests it served meanwhile (the request entries of its file audit device).
Every process it starts is stopped by PID at the end (tools/procs.py).
"""

from __future__ import annotations

import argparse
import asyncio
import http.server
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import hvac
from joserfc import jws
from joserfc.jwk import OKPKey, RSAKey

from app import create_app
from app.services import audit
from app.vault.bootstrap import bootstrap
from bench.jetpero_target import _wait_ready
from bench.load import json_load
from config import Config
from tools import openbao, procs
from tools.procs import free_port

ROOT = Path(__file__).resolve().parents[1]
AUDIENCE = "bench-app"


class Idp:
    def __init__(self, alg: str):
        self.alg = alg
        self.key = OKPKey.generate_key("Ed25519") if alg == "EdDSA" else RSAKey.generate_key(2048)
        document = json.dumps({"keys": [{**self.key.as_dict(private=False), "kid": "k1", "use": "sig"}]}).encode()

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(document)))
                self.end_headers()
                self.wfile.write(document)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def sign(self, sub: str) -> str:
        now = int(time.time())
        claims = {"iss": self.url, "aud": AUDIENCE, "sub": sub, "iat": now, "exp": now + 3600}
        header = {"alg": self.alg, "kid": "k1"}
        return jws.serialize_compact(header, json.dumps(claims).encode(), self.key, algorithms=[self.alg])


def _handled(audit_log: Path) -> int:
    """Requests OpenBao has handled so far: the "request" entries of its file audit device."""
    if not audit_log.exists():
        return 0
    with audit_log.open() as lines:
        return sum(1 for line in lines if line.startswith('{"') and '"type":"request"' in line)


def _free_pair() -> int:
    """A free port whose successor (the cluster port) is free too."""
    while True:
        port = free_port()
        if not procs.port_in_use(port + 1):
            return port


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--alg", choices=["EdDSA", "RS256"], default="RS256")
    parser.add_argument("--in-process", type=int, default=300, help="exchanges in the in-process pass")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="jetpero-bench-exchange-"))
    bao_port, app_port = _free_pair(), free_port()
    bao, root_token = openbao.start_persistent(workdir / "bao", bao_port)  # raft storage, file audit device
    bao_addr = openbao.address(bao_port)
    processes = [bao]
    idp = Idp(args.alg)
    log = open(workdir / "gunicorn.log", "wb")
    try:
        approle = str(workdir / "approle.json")
        bootstrap(hvac.Client(url=bao_addr, token=root_token), approle)
        env = {
            "VAULT_ADDR": bao_addr,
            "VAULT_APPROLE_FILE": approle,
            "JETPERO_ALLOW_PRIVATE_UPSTREAMS": "true",
            "JETPERO_DATABASE_URL": f"sqlite:///{workdir / 'jetpero.db'}",
            "JETPERO_COUNTERS_PATH": str(workdir / "counters.db"),
            "JETPERO_BIND": f"127.0.0.1:{app_port}",
            "JETPERO_WORKERS": "2",
            "JETPERO_LOG_LEVEL": "WARNING",
        }
        app = create_app(Config.from_env(env))
        operator = app.test_cli_runner().invoke(args=["operator-token", "--name", "bench"]).output.strip()
        client, auth = app.test_client(), {"Authorization": f"Bearer {operator}"}
        project = "/api/v1/orgs/bench/projects/bench.co"
        with audit.bound(app.extensions["jetpero.db"]):
            assert client.post("/api/v1/orgs", json={"slug": "bench"}, headers=auth).status_code == 201
            assert client.post("/api/v1/orgs/bench/projects", json={"slug": "bench.co"}, headers=auth).status_code == 201
            body = {"template": "openai", "api_key": "sk-bench-FAKE-" + "0" * 30, "base_url": "http://127.0.0.1:9"}
            assert client.put(f"{project}/providers/openai", json=body, headers=auth).status_code == 200
            body = {"issuer": idp.url, "jwks_url": f"{idp.url}/jwks", "audience": AUDIENCE, "algorithms": [args.alg]}
            assert client.put(f"{project}/identity-providers/bench", json=body, headers=auth).status_code == 200

        # 1. In-process, one thread.
        worker = app.extensions["jetpero"]
        tokens = [idp.sign(f"user-{n}") for n in range(args.in_process)]
        assert client.post("/exchange/bench/bench.co", json={"token": tokens[0]}).status_code == 201
        worker.sync_once()
        assert client.post("/exchange/bench/bench.co", json={"token": tokens[0]}).status_code == 201  # warm
        calls, thread = [], threading.get_ident()
        previous = worker.vault.observer
        worker.vault.observer = lambda identity, *_: calls.append(identity) if threading.get_ident() == thread else None
        started = time.perf_counter()
        for token in tokens:
            assert client.post("/exchange/bench/bench.co", json={"token": token}).status_code == 201
        took = time.perf_counter() - started
        worker.vault.observer = previous
        worker.stop()
        in_process = {
            "exchanges": len(tokens),
            "per_second": round(len(tokens) / took, 1),
            "mean_ms": round(took / len(tokens) * 1000, 2),
            "vault_calls_per_exchange": round(len(calls) / len(tokens), 3),
        }

        # 2. Under gunicorn.
        full_env = {**{k: v for k, v in os.environ.items() if not k.startswith(("VAULT_", "BAO_"))}, **env}
        processes.append(
            subprocess.Popen(
                [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"],
                cwd=ROOT,
                env=full_env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        )
        base = f"http://127.0.0.1:{app_port}"
        _wait_ready(f"{base}/healthz", time.monotonic() + 30)
        url, payload = f"{base}/exchange/bench/bench.co", json.dumps({"token": idp.sign("load")}).encode()
        for _ in range(20):  # warm both workers
            urllib.request.urlopen(urllib.request.Request(url, data=payload, method="POST"), timeout=10).read()
        audit_log = workdir / "bao" / "audit.log"
        handled_before = _handled(audit_log)
        served = asyncio.run(json_load(url, {}, payload, args.concurrency, args.seconds, 10**6))
        handled = _handled(audit_log) - handled_before
        served["vault_requests_per_exchange"] = round(handled / max(served["requests"], 1), 3)
        print(json.dumps({"alg": args.alg, "in_process": in_process, "gunicorn_2_workers": served}, indent=2))
    finally:
        for process in reversed(processes):
            procs.stop(process)
        log.close()
        idp.server.shutdown()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
