"""The processes benchmarked: the bench upstream, the Flask floor and JetPero, started and awaited.

Every process is started here and stopped by PID by the caller (`tools.procs.stop`).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench.cpu import listening_pids
from tools.procs import free_port

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
CHAT_BODY = json.dumps({"model": "bench-model", "messages": [{"role": "user", "content": "Say hello in one line."}]})
ALL_TARGETS = ("direct", "floor", "jetpero", "nousage", "budget")  # nousage: JetPero with JETPERO_USAGE_LOG=false
JETPERO_TARGETS = {"jetpero": {}, "nousage": {"JETPERO_USAGE_LOG": "false"}, "budget": {}}
# budget: JetPero whose token has a daily token budget (far from reached): the limits concern reads
# every request body for its max_tokens and reserves, then settles, in the embedded counter store
JETPERO_POLICIES = {"budget": {"limits": {"tokens_per_day": 10**15}}}


def start_process(name: str, argv: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """Start `argv` from the repo root, output to bench/results/logs/<name>.log."""
    (RESULTS / "logs").mkdir(parents=True, exist_ok=True)
    log = open(RESULTS / "logs" / f"{name}.log", "wb")  # the child keeps its own copy
    try:
        return subprocess.Popen(argv, cwd=ROOT, env={**os.environ, **(env or {})}, stdout=log, stderr=log)
    finally:
        log.close()


def wait_http(
    url: str, headers: dict[str, str], timeout: float = 20.0, proc: subprocess.Popen[bytes] | None = None
) -> None:
    """Wait until POST `url` answers 200 (the JSON route) or raise."""
    parts = url.split("/", 3)
    host, port = parts[2].rsplit(":", 1)
    path = "/" + (parts[3] if len(parts) > 3 else "")
    deadline, last = time.monotonic() + timeout, ""
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before {url} answered")
        try:
            conn = http.client.HTTPConnection(host, int(port), timeout=5)
            conn.request("POST", path, CHAT_BODY, {"Content-Type": "application/json", **headers})
            status = conn.getresponse().status
            conn.close()
            if status == 200:
                return
            last = f"HTTP {status}"
        except OSError as exc:
            last = repr(exc)
        time.sleep(0.2)
    raise RuntimeError(f"{url} not ready after {timeout}s: {last}")


@dataclass
class Target:
    name: str
    base: str
    headers: dict[str, str]
    proxy_pids: list[int]


def start_target(
    name: str,
    up_url: str,
    args: argparse.Namespace,
    processes: list[tuple[subprocess.Popen[bytes], int]],
    stops: list[Callable[[], None]],
) -> Target:
    """Start target `name`, registering how to stop it (main stops everything by PID at the end)."""
    headers: dict[str, str] = {}
    if name == "direct":
        base = up_url
    elif name == "floor":
        port = free_port()
        # -c /dev/null: not the repo's gunicorn.conf.py (JetPero's); its worker settings are repeated here
        argv = [sys.executable, "-m", "gunicorn", "-c", "/dev/null", "-k", "gevent", "-w", str(args.workers),
                "--worker-connections", "4000", "--keep-alive", "75", "--graceful-timeout", "3",
                "--log-level", "warning", "--bind", f"127.0.0.1:{port}", "bench.floor:app"]  # fmt: skip
        floor = start_process("floor", argv, {"BENCH_UPSTREAM": up_url})
        processes.append((floor, signal.SIGINT))
        base = f"http://127.0.0.1:{port}"
        wait_http(base + "/v1/chat/completions", {}, proc=floor)
    else:
        from bench.jetpero_target import start_jetpero

        policy = JETPERO_POLICIES.get(name)
        base, headers, stop = start_jetpero(up_url, JETPERO_TARGETS[name], policy)  # NotImplementedError: skipped
        stops.append(stop)
        wait_http(base + "/v1/chat/completions", headers)
    proxy_pids = [] if name == "direct" else listening_pids(int(base.split(":")[2].split("/")[0]))
    print(f"{name}: {base} (proxy pids {proxy_pids})", flush=True)
    return Target(name, base, headers, proxy_pids)
