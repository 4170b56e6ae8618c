"""Side-by-side benchmark: direct upstream, the Flask floor (bench.floor) and JetPero (bench.jetpero_target).

    .venv/bin/python -m bench.run                  # all targets (JetPero skipped if its starter raises NotImplemented)
    .venv/bin/python -m bench.run --only floor     # comma list of: direct, floor, jetpero
    .venv/bin/python -m bench.run --sse-rate 5 --wait-quiet 120

Per target: 1 KB JSON POSTs at concurrency 1 and 50 (req/s, p50, p99), then SSE streams (default 1000 streams x
20 events/s x 10 s). The CPU used meanwhile by the load client, the upstream, the proxy (the PIDs listening on its
port), interrupts and any other process is recorded with each test. Results: printed tables and
bench/results/latest.json. Every process started here is stopped by PID at the end, errors included.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import http.client
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from types import FrameType
from typing import Any

from bench.load import json_load, raise_nofile_limit, sse_load

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
CHAT_BODY = json.dumps({"model": "bench-model", "messages": [{"role": "user", "content": "Say hello in one line."}]})
ALL_TARGETS = ("direct", "floor", "jetpero")
_CLK_TCK = os.sysconf("SC_CLK_TCK")
QUIET_BUSY_PCT = 15  # machine CPU busy (% of one core) above which figures are flagged as noisy


# ---- processes -------------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_process(name: str, argv: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """Start `argv` from the repo root, output to bench/results/logs/<name>.log."""
    (RESULTS / "logs").mkdir(parents=True, exist_ok=True)
    log = open(RESULTS / "logs" / f"{name}.log", "wb")  # the child keeps its own copy
    try:
        return subprocess.Popen(argv, cwd=ROOT, env={**os.environ, **(env or {})}, stdout=log, stderr=log)
    finally:
        log.close()


def _start_time(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def stop_process(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout: float = 8.0) -> None:
    """Stop `proc` with `sig`, then SIGKILL it and any child it left behind (checked by PID and start time)."""
    if proc.poll() is not None:
        return
    kids = [(pid, _start_time(pid)) for pid in children(proc.pid)]
    proc.send_signal(sig)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)
    deadline = time.monotonic() + 3
    for pid, started in kids:
        while _start_time(pid) == started and started is not None:
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                break
            time.sleep(0.05)


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


# ---- CPU accounting --------------------------------------------------------------------------------------------


def _all_proc_cpu() -> dict[int, tuple[str, float]]:
    """pid -> (command name, CPU seconds used so far) for every process."""
    out = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                name, rest = (entry / "stat").read_text().split(" (", 1)[1].rsplit(")", 1)
                fields = rest.split()
                out[int(entry.name)] = (name, (int(fields[11]) + int(fields[12])) / _CLK_TCK)
            except (OSError, IndexError, ValueError):
                continue
    return out


def _machine_cpu() -> tuple[float, float, float, float]:
    """(busy, irq, steal, total) CPU seconds of the machine; busy excludes idle, iowait and steal."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    total = sum(values)
    busy = total - values[3] - values[4] - values[7]
    return busy / _CLK_TCK, (values[5] + values[6]) / _CLK_TCK, values[7] / _CLK_TCK, total / _CLK_TCK


def listening_pids(port: int) -> list[int]:
    """PIDs holding the listening socket of 127.0.0.1:`port` (a gunicorn master and its workers)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(f"socket:[{fields[9]}]")
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                if any(os.readlink(fd) in inodes for fd in (entry / "fd").iterdir()):
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


def machine_background(seconds: float = 1.0) -> dict[str, int]:
    """CPU busy and steal on the machine while nothing of ours runs (noise indicator), in % of one core."""
    busy0, _irq0, steal0, all0 = _machine_cpu()
    time.sleep(seconds)
    busy1, _irq1, steal1, all1 = _machine_cpu()
    scale = (os.cpu_count() or 1) * 100 / max(all1 - all0, 1e-9)
    return {"busy": round((busy1 - busy0) * scale), "steal": round((steal1 - steal0) * scale)}


def measure(coro: Coroutine[Any, Any, dict[str, Any]], groups: dict[str, list[int]]) -> dict[str, Any]:
    """Run one load test; add the CPU used meanwhile, in % of one core: by this client, each group of PIDs,
    interrupts (`irq`, mostly loopback TCP softirq), other processes (`others`, the 3 biggest in `top_others`),
    and taken by the hypervisor (`steal`)."""
    ncpu = os.cpu_count() or 1
    t0, procs0, (busy0, irq0, steal0, all0) = time.monotonic(), _all_proc_cpu(), _machine_cpu()
    result = asyncio.run(coro)
    wall = time.monotonic() - t0
    procs1, (busy1, irq1, steal1, all1) = _all_proc_cpu(), _machine_cpu()
    used = {pid: (name, cpu - procs0.get(pid, (name, 0.0))[1]) for pid, (name, cpu) in procs1.items()}
    mine = {os.getpid(): "client"} | {pid: group for group, pids in groups.items() for pid in pids}
    cpu = {group: 0.0 for group in ("client", *groups)}
    others: dict[str, float] = {}
    for pid, (name, seconds) in used.items():
        if pid in mine:
            cpu[mine[pid]] += seconds
        elif seconds > 0:
            others[name] = others.get(name, 0.0) + seconds
    scale = ncpu * 100 / max(all1 - all0, 1e-9)
    top = sorted(others.items(), key=lambda item: -item[1])[:3]
    result["cpu_pct"] = {
        **{group: round(seconds / wall * 100) for group, seconds in cpu.items()},
        "irq": round((irq1 - irq0) * scale),
        "others": round(sum(others.values()) / wall * 100),
        "steal": round((steal1 - steal0) * scale),
        "machine": round((busy1 - busy0) * scale),
        "of": ncpu * 100,
        "top_others": {name: round(seconds / wall * 100) for name, seconds in top},
    }
    return result


# ---- targets ---------------------------------------------------------------------------------------------------


def bench_target(
    name: str, base: str, headers: dict[str, str], args: argparse.Namespace, up_pids: list[int], proxy_pids: list[int]
) -> dict[str, Any]:
    body = CHAT_BODY.encode()
    url = base + "/v1/chat/completions"
    out: dict[str, Any] = {"base_url": base}
    groups = {"upstream": up_pids, "proxy": proxy_pids}
    if not args.skip_json:
        asyncio.run(json_load(url, headers, body, 10, 1.0, 100_000))  # warm-up: workers, pools, caches
        for conc in (1, 50):
            print(f"  {name}: JSON c={conc} for {args.json_seconds}s", flush=True)
            out[f"json_c{conc}"] = measure(json_load(url, headers, body, conc, args.json_seconds, 1_000_000), groups)
            time.sleep(0.5)
    if not args.skip_sse:
        events = round(args.sse_rate * args.sse_seconds)
        print(f"  {name}: SSE {args.sse_streams} streams x {events} events at {args.sse_rate}/s", flush=True)
        coro = sse_load(base + "/sse", headers, args.sse_streams, events, 1 / args.sse_rate)
        fds: dict[str, int] = {}
        timer = _fds_later(proxy_pids, 1 + args.sse_seconds / 2, fds)
        out["sse"] = measure(coro, groups)
        timer.cancel()
        if fds:
            out["worker_fds"] = fds
        time.sleep(1.0)
    return out


def _fds_later(pids: list[int], delay: float, into: dict[str, int]) -> threading.Timer:
    """Count each worker's open file descriptors after `delay` seconds (how streams spread over workers)."""

    def sample() -> None:
        for pid in pids:
            try:
                into[str(pid)] = len(os.listdir(f"/proc/{pid}/fd"))
            except OSError:
                pass

    timer = threading.Timer(delay, sample)
    timer.daemon = True
    timer.start()
    return timer


# ---- report ----------------------------------------------------------------------------------------------------


CPU_COLUMNS = "client/upstream/proxy/irq/others/steal"


def _cpu(cpu: dict[str, int]) -> str:
    return "/".join(str(cpu.get(key, "-")) for key in CPU_COLUMNS.split("/"))


def _fmt(value: Any, width: int) -> str:
    return f"{value:>{width}}" if value is not None else f"{'-':>{width}}"


def report(all_results: dict[str, dict[str, Any]], args: argparse.Namespace) -> dict[str, Any]:
    results = {name: res for name, res in all_results.items() if "error" not in res}
    for name in all_results.keys() - results.keys():
        print(f"{name}: {all_results[name]['error']}")
    json_results = {name: res for name, res in results.items() if "json_c1" in res}
    if json_results:
        print("\nJSON 1 KB, POST /v1/chat/completions" + " " * 22 + f"CPU% at c=50 (of 200): {CPU_COLUMNS}")
        c1_head, c50_head = (
            f"{'c=1 req/s':>9} {'p50 ms':>7} {'p99 ms':>7}",
            f"{'c=50 req/s':>10} {'p50 ms':>7} {'p99 ms':>7}",
        )
        print(f"{'target':8} | {c1_head} | {c50_head} {'err':>5} |")
    for name, res in json_results.items():
        c1, c50 = res["json_c1"], res["json_c50"]
        cpu = c50.get("cpu_pct", {})
        print(
            f"{name:8} | {_fmt(c1.get('rps'), 9)} {_fmt(c1.get('p50_ms'), 7)} {_fmt(c1.get('p99_ms'), 7)} | "
            f"{_fmt(c50.get('rps'), 10)} {_fmt(c50.get('p50_ms'), 7)} {_fmt(c50.get('p99_ms'), 7)} "
            f"{_fmt((c1.get('errors') or 0) + (c50.get('errors') or 0), 5)} | "
            f"{_cpu(cpu)}"
        )
    events = round(args.sse_rate * args.sse_seconds)
    if any("sse" in res for res in results.values()):
        print(f"\nSSE: {args.sse_streams} streams x {events} events ({args.sse_rate}/s, {args.sse_seconds}s)")
        print(f"{'target':8} | {'all-events':>10} {'errors':>6} | {'gap p50':>7} {'p99':>6} {'max':>6} | "
              f"{'delay p50':>9} {'p99':>7} | CPU% {CPU_COLUMNS}; fds per proxy pid")  # fmt: skip
    for name, res in results.items():
        if not (sse := res.get("sse")):
            continue
        cpu = sse["cpu_pct"]
        print(
            f"{name:8} | {sse['streams_ok']:>10} {sse['errors']:>6} | {sse['gap_p50_ms']:>7} {sse['gap_p99_ms']:>6} "
            f"{sse['gap_max_ms']:>6} | {sse['delay_p50_ms']:>9} {sse['delay_p99_ms']:>7} | "
            f"{_cpu(cpu)} {res.get('worker_fds', '')}"
            + (f" errors: {sse['error_kinds']}" if sse["error_kinds"] else "")
        )
    noisy = [
        f"{name} before: {res['idle_machine_cpu_pct']['busy']}"
        for name, res in results.items()
        if res["idle_machine_cpu_pct"]["busy"] > QUIET_BUSY_PCT
    ]
    noisy += [
        f"{name} {test}: {res[test]['cpu_pct']['others']} {res[test]['cpu_pct']['top_others']}"
        for name, res in results.items()
        for test in ("json_c1", "json_c50", "sse")
        if test in res and res[test]["cpu_pct"]["others"] > QUIET_BUSY_PCT
    ]
    if noisy:
        print(f"\nWARNING: CPU used by other processes (% of one core): {', '.join(noisy)}; figures may be noisy")
    ratios: dict[str, Any] = {}
    for proxy, base in (("floor", "direct"), ("jetpero", "floor")):
        p, b = results.get(proxy, {}), results.get(base, {})
        if "json_c1" in p and "json_c1" in b:
            ratios[f"{proxy}_vs_{base}"] = {
                "added_p50_ms_c1": round(p["json_c1"]["p50_ms"] - b["json_c1"]["p50_ms"], 2),
                "throughput_pct_c50": round(100 * p["json_c50"]["rps"] / max(b["json_c50"]["rps"], 1e-9), 1),
            }
    if ratios:
        print()
    for key, ratio in ratios.items():
        print(f"{key}: +{ratio['added_p50_ms_c1']} ms p50 at c=1; {ratio['throughput_pct_c50']}% throughput at c=50")
    return ratios


# ---- main ------------------------------------------------------------------------------------------------------


def run_target(
    name: str,
    up_url: str,
    up_pids: list[int],
    args: argparse.Namespace,
    procs: list[tuple[subprocess.Popen[bytes], int]],
    stops: list[Callable[[], None]],
) -> dict[str, Any]:
    """Start target `name` (registering how to stop it), benchmark it, stop it."""
    headers: dict[str, str] = {}
    stop: Callable[[], None] | None = None
    if name == "direct":
        base = up_url
    elif name == "floor":
        port = free_port()
        # -c /dev/null: not the repo's gunicorn.conf.py (JetPero's); its worker settings are repeated here
        argv = [sys.executable, "-m", "gunicorn", "-c", "/dev/null", "-k", "gevent", "-w", str(args.workers),
                "--worker-connections", "4000", "--keep-alive", "75", "--graceful-timeout", "3",
                "--log-level", "warning", "--bind", f"127.0.0.1:{port}", "bench.floor:app"]  # fmt: skip
        floor = start_process("floor", argv, {"BENCH_UPSTREAM": up_url})
        procs.append((floor, signal.SIGINT))
        stop = functools.partial(stop_process, floor, signal.SIGINT)
        base = f"http://127.0.0.1:{port}"
        wait_http(base + "/v1/chat/completions", {}, proc=floor)
    else:
        from bench.jetpero_target import start_jetpero

        try:
            base, headers, stop = start_jetpero(up_url)
        except NotImplementedError as exc:
            return {"error": f"skipped: {exc}"}
        stops.append(stop)
        wait_http(base + "/v1/chat/completions", headers)
    print(f"{name}: {base}", flush=True)
    proxy_pids = [] if name == "direct" else listening_pids(int(base.split(":")[2].split("/")[0]))
    background = machine_background()  # noise check: should be near 0 on a quiet machine
    deadline = time.monotonic() + args.wait_quiet
    while background["busy"] > QUIET_BUSY_PCT and time.monotonic() < deadline:
        background = machine_background()
    print(f"  machine CPU while idle, % of one core: busy {background['busy']}, steal {background['steal']}")
    result = bench_target(name, base, headers, args, up_pids, proxy_pids)
    result["idle_machine_cpu_pct"] = background
    if stop is not None:
        stop()  # stopped again (harmlessly) by main's finally
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description="JetPero side-by-side benchmark")
    parser.add_argument("--only", default=",".join(ALL_TARGETS), help="comma list of: direct, floor, jetpero")
    parser.add_argument("--json-seconds", type=float, default=5.0)
    parser.add_argument("--sse-streams", type=int, default=1000)
    parser.add_argument("--sse-rate", type=float, default=20.0, help="events per second per stream")
    parser.add_argument("--sse-seconds", type=float, default=10.0)
    parser.add_argument("--skip-json", action="store_true")
    parser.add_argument("--skip-sse", action="store_true")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers for the floor")
    parser.add_argument(
        "--wait-quiet",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help=f"before each target, wait up to this long for the machine to be idle (< {QUIET_BUSY_PCT}%% busy)",
    )
    parser.add_argument("--output", type=Path, default=RESULTS / "latest.json")
    args = parser.parse_args()
    targets = [t.strip() for t in args.only.split(",") if t.strip()]
    if unknown := set(targets) - set(ALL_TARGETS):
        parser.error(f"unknown targets: {sorted(unknown)}")

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    print(f"open files limit: {raise_nofile_limit()}; cpus: {os.cpu_count()}", flush=True)
    procs: list[tuple[subprocess.Popen[bytes], int]] = []
    stops: list[Callable[[], None]] = []
    results: dict[str, dict[str, Any]] = {}
    try:
        up_port = free_port()
        upstream = start_process("upstream", [sys.executable, "-m", "bench.upstream", "--port", str(up_port)])
        procs.append((upstream, signal.SIGTERM))
        up_url = f"http://127.0.0.1:{up_port}"
        wait_http(up_url + "/v1/chat/completions", {}, proc=upstream)
        up_pids = [upstream.pid]
        for name in targets:
            try:
                results[name] = run_target(name, up_url, up_pids, args, procs, stops)
            except Exception as exc:  # report it, go on with the other targets
                print(f"{name}: FAILED {exc!r}", flush=True)
                results[name] = {"error": repr(exc)}
    finally:
        for stop in reversed(stops):
            try:
                stop()
            except Exception as exc:  # keep stopping the rest
                print(f"stop failed: {exc!r}", file=sys.stderr)
        for proc, sig in reversed(procs):
            stop_process(proc, sig)
    ratios = report(results, args)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    document = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "targets": results,
        "ratios": ratios,
    }
    args.output.write_text(json.dumps(document, indent=2) + "\n")
    print(f"\nwrote {args.output.relative_to(ROOT) if args.output.is_relative_to(ROOT) else args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
