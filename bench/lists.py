"""Cost of listing a project's tokens (issue 14.10): wall time and Vault calls, per page and in full.

    .venv/bin/python -m bench.lists                       # 1,000 tokens, raft-backed OpenBao
    .venv/bin/python -m bench.lists --tokens 300 --storage dev --repeat 3

Starts a throw-away OpenBao (`--storage raft`, what deployments run, or the in-memory `dev`
server), bootstraps JetPero in-process (Flask's test client: no HTTP server in between),
makes one project and writes `--tokens` token records straight into its KV (as `issue` stores
them). Then, `--repeat` times each, it measures:

- `page`: one GET of the token list with `?limit=PAGE` (the first page);
- `full`: the whole list, following each answer's `Link: rel="next"` until there is none
  (an API without pagination answers everything at once: one request);
- `full@1000`: the same with `?limit=1000`.

Vault calls are HTTP requests on the app's own Vault session (a response hook counts them).
Prints the medians as JSON. Bounded: at most 5,000 tokens, 10 repeats; the OpenBao it starts is
stopped by PID.
"""

from __future__ import annotations

import argparse
import json
import secrets
import statistics
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from app import create_app
from app.vault import kv
from app.vault.bootstrap import bootstrap
from app.vault.layout import KV, TOKENS, record
from tests.checks import free_port_pair
from tests.helpers import Api, Bao, make_config
from tools import openbao, procs

PAGE = 100


class Counter:
    def __init__(self) -> None:
        self.calls = 0
        self._lock = threading.Lock()

    def __call__(self, response, *args, **kwargs):
        with self._lock:
            self.calls += 1
        return response


def _record(index: int) -> dict:
    return {
        "name": f"bench-{index}",
        "environment": "development",
        "scope": ["*"],
        "allowed_origins": None,
        "expires_at": int(time.time()) + 3600,
        "created_by": "operator:bench",
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "revoked_at": None,
    }


def _seed(bao: Bao, namespace: str, count: int) -> None:
    client = bao.root(namespace)

    def write(index: int) -> None:
        kv.write(client, KV, record(TOKENS, uuid.uuid4().hex), _record(index), cas=0)

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(write, range(count)))


def _measure(api: Api, counter: Counter, path: str, *, follow: bool) -> tuple[float, int, int, int]:
    """(seconds, Vault calls, requests, records) of one GET (following `next` links if asked)."""
    calls, started, requests, records = counter.calls, time.perf_counter(), 0, 0
    url = path
    while url:
        response = api.client.get(url, headers={"Authorization": f"Bearer {api.token}"})
        assert response.status_code == 200, response.get_json()
        requests += 1
        records += len(response.get_json())
        link = response.headers.get("Link", "")
        url = link[1 : link.index(">")] if follow and 'rel="next"' in link else None
    return time.perf_counter() - started, counter.calls - calls, requests, records


def _median(runs: list[tuple[float, int, int, int]]) -> dict:
    return {
        "ms": round(statistics.median(run[0] for run in runs) * 1000, 1),
        "vault_calls": statistics.median(run[1] for run in runs),
        "requests": runs[0][2],
        "records": runs[0][3],
    }


def run(tokens: int, repeat: int, storage: str) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port_pair()
        if storage == "raft":
            proc, root_token = openbao.start_persistent(Path(tmp) / "bao", port)
        else:
            root_token = secrets.token_hex(16)
            proc = openbao.start_dev(port, root_token, Path(tmp) / "bao.log")
        app = None
        try:
            bao = Bao(addr=openbao.address(port), root_token=root_token, process=proc)
            approle = str(Path(tmp) / "approle.json")
            bootstrap(bao.root(), approle)
            app = create_app(make_config(bao, approle, JETPERO_DATABASE_URL=f"sqlite:///{tmp}/jetpero.db"))
            counter = Counter()
            app.extensions["jetpero"].vault._session.hooks["response"].append(counter)
            result = app.test_cli_runner().invoke(args=["operator-token", "--name", "bench"])
            api = Api(app.test_client(), result.output.strip())
            org = f"bench-{uuid.uuid4().hex[:6]}"
            assert api.post("/orgs", json={"slug": org}).status_code == 201
            assert api.post(f"/orgs/{org}/projects", json={"slug": "p"}).status_code == 201
            _seed(bao, f"{org}/p", tokens)
            path = f"/api/v1/orgs/{org}/projects/p/tokens"
            _measure(api, counter, f"{path}?limit={PAGE}", follow=False)  # warm: the project's Vault token
            return {
                "tokens": tokens,
                "storage": storage,
                "page": _median([_measure(api, counter, f"{path}?limit={PAGE}", follow=False) for _ in range(repeat)]),
                "full": _median([_measure(api, counter, path, follow=True) for _ in range(repeat)]),
                "full@1000": _median(
                    [_measure(api, counter, f"{path}?limit=1000", follow=True) for _ in range(repeat)]
                ),
            }
        finally:
            if app is not None:
                app.extensions["jetpero"].stop()
            procs.stop(proc)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--storage", choices=("raft", "dev"), default="raft")
    args = parser.parse_args()
    print(json.dumps(run(min(args.tokens, 5000), min(args.repeat, 10), args.storage), indent=2))


if __name__ == "__main__":
    main()
