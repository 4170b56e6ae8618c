"""Instructions per proxied request, floor vs JetPero, counted by valgrind (callgrind).

Wall-clock figures on this shared 2-core VM move by ±10% from run to run; instruction counts
do not, so this is the tool for judging a small change to the hot path:

    .venv/bin/python -m bench.instructions                   # about 2 minutes; needs valgrind
    .venv/bin/python -m bench.instructions --body-size 32768  # a 32 KB chat body (bench.bodies)

Each target serves requests in-process through Flask's test client (same 966-byte JSON body, or
`--body-size` bytes,
same fake upstream from bench.upstream), as under gunicorn: gevent's monkey patching applied
first, Prometheus in multiprocess mode (files in /dev/shm). The count of a run with few requests is subtracted
from one with more, which cancels start-up, imports and set-up (JetPero's Vault calls
included): what is left is the cost of the extra requests. Both targets get the same request
(JetPero's token in Authorization), so the test client's own work is the same in both.
"""

from __future__ import annotations

import sys

if __name__ == "__main__" and "--child" in sys.argv:  # as a gunicorn gevent worker does, before the app loads
    from gevent import monkey

    monkey.patch_all()

import argparse
import json
import logging
import os
import re
import secrets
import shutil
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bench.limited import POLICY
from tools.procs import free_port, stop

ROOT = Path(__file__).resolve().parents[1]
BODY = b'{"model":"bench-model","messages":[{"role":"user","content":"' + b"x" * 900 + b'"}]}'
if os.environ.get("BENCH_BODY_SIZE"):  # --body-size N, handed to the children by the environment
    from bench.bodies import body

    BODY = body(int(os.environ["BENCH_BODY_SIZE"]))
FAKE_KEY = "sk-bench-FAKE-KEY-0000000000000000"
_COLLECTED = re.compile(r"Collected : (\d+)")
TARGETS = ("floor", "jetpero", "nousage")  # nousage: JetPero with JETPERO_USAGE_LOG=false
# limited: JetPero with a token under bench.limited's policy (a rate limit and a daily token
# budget, never reached) and the embedded counter store (--targets to add it)
EXTRA_TARGETS = ("limited",)


def _client(target: str, settings: dict):
    """(test client, path, headers) for a target, built in this process."""
    if target == "floor":
        os.environ["BENCH_UPSTREAM"] = settings["upstream"]
        from bench.floor import app

        # The same request as JetPero gets: an SDK sends its Authorization header to any base URL.
        return app.test_client(), "/v1/chat/completions", {"Authorization": f"Bearer {settings['token']}"}
    from app import create_app
    from config import Config

    config = Config.from_env(
        {
            "VAULT_ADDR": settings["vault_addr"],
            "VAULT_APPROLE_FILE": settings["approle_file"],
            "JETPERO_ALLOW_PRIVATE_UPSTREAMS": "true",
            "JETPERO_SYNC_INTERVAL": "600",  # no poll during the count
            "JETPERO_DATABASE_URL": settings["database_url"],
            "JETPERO_USAGE_LOG": "false" if target == "nousage" else "true",  # JetPero without usage records
            "JETPERO_COUNTERS_PATH": settings["counters_path"],
        }
    )
    app = create_app(config)
    logging.getLogger().handlers[0].stream = open(os.devnull, "w")  # lives as long as the process
    token = settings["limited_token" if target == "limited" else "token"]
    return app.test_client(), "/proxy/openai/v1/chat/completions", {"Authorization": f"Bearer {token}"}


def child(target: str, requests: int, settings_file: str) -> None:
    """Run `requests` proxied calls (under valgrind, started by `count`)."""
    client, path, headers = _client(target, json.loads(Path(settings_file).read_text()))
    # Usage records are written once a second in one transaction: a few hundred rows each at
    # load. Under valgrind's 50x slow-down that timer would fire every ~20 calls, a batch no
    # real load makes; so the run's records are written in one batch at its end, and the short
    # run's subtracted count cancels that transaction's fixed cost as it does start-up's.
    writer = client.application.extensions.get("jetpero.usage")
    if writer is not None:
        writer.interval = 86400
    # Likewise a budget correction rides with the next take when that comes within the counter
    # store's SETTLE_DELAY (50 ms), as it does at any real rate; under valgrind a call takes
    # about that long, so the delay is lifted for the count.
    from app.store import corrections

    corrections.SETTLE_DELAY = 86400
    for _ in range(requests):
        response = client.post(path, data=BODY, headers=headers, content_type="application/json")
        response.get_data()
        response.close()
    if writer is not None:
        writer.flush()
    sys.stdout.flush()
    os._exit(0)  # no interpreter teardown in the count


def count(target: str, requests: int, settings_file: str, out_dir: Path) -> int:
    """Instructions of a whole child run."""
    result = subprocess.run(
        [
            "valgrind",
            "--tool=callgrind",
            f"--callgrind-out-file={out_dir / f'callgrind.{target}.{requests}'}",
            sys.executable,
            "-m",
            "bench.instructions",
            "--child",
            target,
            str(requests),
            settings_file,
        ],
        cwd=ROOT,
        # A fixed hash seed: with a random one, start-up alone moves by tens of millions of
        # instructions from run to run, which the subtraction of the short run does not cancel.
        env={**os.environ, "PYTHONHASHSEED": "0"},
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    match = _COLLECTED.search(result.stderr)
    if result.returncode != 0 or not match:
        raise RuntimeError(f"{target} x{requests} failed: {result.stderr[-2000:]}")
    return int(match.group(1))


def set_up(work: Path) -> tuple[dict, list]:
    """A dev OpenBao, the bench upstream, and a JetPero project whose provider points at it."""
    import hvac

    from app import create_app
    from app.vault.bootstrap import bootstrap
    from config import Config
    from tools import openbao

    processes = []
    bao_port, up_port = free_port(), free_port()
    root_token = secrets.token_hex(16)
    processes.append(openbao.start_dev(bao_port, root_token, work / "bao.log"))
    processes.append(
        subprocess.Popen(
            [sys.executable, "-m", "bench.upstream", "--port", str(up_port)],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    )
    addr, approle = openbao.address(bao_port), str(work / "approle.json")
    bootstrap(hvac.Client(url=addr, token=root_token), approle)
    database_url = f"sqlite:///{work}/jetpero.db"
    config = Config.from_env(
        {
            "VAULT_ADDR": addr,
            "VAULT_APPROLE_FILE": approle,
            "JETPERO_ALLOW_PRIVATE_UPSTREAMS": "true",
            "JETPERO_DATABASE_URL": database_url,
        }
    )
    app = create_app(config)
    client = app.test_client()
    operator = app.test_cli_runner().invoke(args=["operator-token", "--name", "bench"]).output.strip()
    admin = {"Authorization": f"Bearer {operator}"}
    upstream = f"http://127.0.0.1:{up_port}"
    client.post("/api/v1/orgs", json={"slug": "bench"}, headers=admin)
    client.post("/api/v1/orgs/bench/projects", json={"slug": "bench.co"}, headers=admin)
    project = "/api/v1/orgs/bench/projects/bench.co"
    client.put(
        f"{project}/providers/openai",
        json={"template": "openai", "api_key": FAKE_KEY, "base_url": upstream},
        headers=admin,
    )
    tokens = [
        client.post(
            f"{project}/tokens", json={"name": "bench", "environment": "development", "expires_in": 7200}, headers=admin
        ).json
        for _ in range(2)
    ]
    token, limited = tokens[0]["token"], tokens[1]["token"]
    client.put(f"{project}/tokens/{tokens[1]['id']}/policy", json=POLICY, headers=admin)
    app.extensions["jetpero"].stop()
    time.sleep(0.5)  # the upstream answers by now
    settings = {
        "upstream": upstream,
        "vault_addr": addr,
        "approle_file": approle,
        "token": token,
        "limited_token": limited,
        "database_url": database_url,
        "counters_path": str(work / "counters.sqlite"),
    }
    return settings, processes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--child", nargs=3, metavar=("TARGET", "N", "SETTINGS"), help=argparse.SUPPRESS)
    parser.add_argument("--few", type=int, default=200, help="requests in the short run")
    parser.add_argument("--many", type=int, default=600, help="requests in the long run")
    parser.add_argument("--body-size", type=int, help="request body bytes (bench.bodies; default a 966-byte body)")
    parser.add_argument(
        "--targets", default=",".join(TARGETS), help=f"comma list of {', '.join(TARGETS + EXTRA_TARGETS)}"
    )
    args = parser.parse_args()
    if args.body_size:
        os.environ["BENCH_BODY_SIZE"] = str(args.body_size)
    if args.child:
        child(args.child[0], int(args.child[1]), args.child[2])
    if not shutil.which("valgrind"):
        print("valgrind is not installed (apt-get install valgrind)", file=sys.stderr)
        return 2

    work = Path(tempfile.mkdtemp(prefix="jetpero-instructions-"))
    shm = "/dev/shm"  # noqa: S108 - a private mkdtemp directory inside it, as gunicorn.conf.py does
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(dir=shm if os.path.isdir(shm) else None)
    settings, processes = set_up(work)
    try:
        settings_file = str(work / "settings.json")
        Path(settings_file).write_text(json.dumps(settings))
        targets = [name for name in args.targets.split(",") if name]
        if unknown := set(targets) - set(TARGETS + EXTRA_TARGETS):
            parser.error(f"unknown targets: {', '.join(sorted(unknown))}")
        runs = [(target, n) for target in targets for n in (args.few, args.many)]
        with ThreadPoolExecutor(max_workers=2) as pool:  # one valgrind per core
            counts = dict(zip(runs, pool.map(lambda run: count(*run, settings_file, work), runs), strict=True))
    finally:
        for process in reversed(processes):
            stop(process)
        shutil.rmtree(os.environ.pop("PROMETHEUS_MULTIPROC_DIR"), ignore_errors=True)
    per_request = {
        target: (counts[(target, args.many)] - counts[(target, args.few)]) / (args.many - args.few)
        for target in targets
    }
    print("instructions per proxied request: " + ", ".join(f"{t} {n / 1e6:.3f} M" for t, n in per_request.items()))
    for what, (more, less) in {
        "JetPero adds": ("jetpero", "floor"),
        "usage records (JETPERO_USAGE_LOG=false is `nousage`) add": ("jetpero", "nousage"),
        "a rate limit and a budget (embedded store) add": ("limited", "jetpero"),
    }.items():
        if more in per_request and less in per_request:
            extra = per_request[more] - per_request[less]
            print(f"{what} {extra / 1e6:.3f} M ({(per_request[more] / per_request[less] - 1) * 100:.1f}%)")
    print(f"request body: {len(BODY) if not args.body_size else args.body_size} bytes")
    print(f"callgrind files for callgrind_annotate: {work}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
