"""Side-by-side benchmark: direct upstream, the Flask floor (bench.floor) and JetPero (bench.jetpero_target).

    .venv/bin/python -m bench.run                       # all targets (JetPero skipped if its starter raises NotImplemented)
    .venv/bin/python -m bench.run --only floor,jetpero  # comma list of: direct, floor, jetpero
    .venv/bin/python -m bench.run --rounds 7 --sse 1000x20 --wait-quiet 120

All selected targets are started first and stay up together, and all get the same requests (with
JetPero's project token in Authorization, as an SDK would send it to any base URL). The machine is noisy, so JSON tests (1 KB POSTs)
run in interleaved rounds (``--rounds``, default 5): each round measures every target at concurrency 1, then every target at 50
(``--json-seconds`` each, default 3), the order rotating from round to round; floor and JetPero are always measured
back to back (which one goes first alternates). Per target the table shows the median over rounds of req/s, p50
and p99. The JetPero-vs-floor ratios (added p50 at c=1, throughput at c=50) are computed within each round and
reported as the median of the per-round ratios with their min-max.

SSE then runs once per target and load (``--sse``, default ``1000x20,1000x5``: streams x events/s, each for
``--sse-seconds``, default 8): streams that got every event, errors, inter-event gap and delivery delay.

The CPU used meanwhile by the load client, the upstream, the proxy (the PIDs listening on its port), interrupts and
any other process (the idle targets included) is recorded with each test. A verdict against JetPero's targets
(added p50 <= 0.3 ms; throughput >= 90% of the floor; 1000 streams x 20/s all delivered with p99 gap < 100 ms)
closes the report. Results: printed tables and bench/results/latest.json (every round's figures included).
Every process started here is stopped by PID at the end, errors included. A default full run takes ~3-4 minutes.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
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
    result["cpu_seconds"] = {group: round(seconds, 3) for group, seconds in cpu.items()}
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
    procs: list[tuple[subprocess.Popen[bytes], int]],
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
        procs.append((floor, signal.SIGINT))
        base = f"http://127.0.0.1:{port}"
        wait_http(base + "/v1/chat/completions", {}, proc=floor)
    else:
        from bench.jetpero_target import start_jetpero

        base, headers, stop = start_jetpero(up_url)  # NotImplementedError: skipped by the caller
        stops.append(stop)
        wait_http(base + "/v1/chat/completions", headers)
    proxy_pids = [] if name == "direct" else listening_pids(int(base.split(":")[2].split("/")[0]))
    print(f"{name}: {base} (proxy pids {proxy_pids})", flush=True)
    return Target(name, base, headers, proxy_pids)


def quiet_machine(args: argparse.Namespace) -> dict[str, int]:
    """Machine CPU while no test runs (should be near 0); waits up to --wait-quiet for it to drop."""
    background = machine_background()
    deadline = time.monotonic() + args.wait_quiet
    while background["busy"] > QUIET_BUSY_PCT and time.monotonic() < deadline:
        background = machine_background()
    return background


def round_orders(names: list[str], rounds: int) -> list[list[str]]:
    """Target order of each round: rotated each round, floor and jetpero kept adjacent as one block (so their ratio
    compares two back-to-back measurements), the block flipped on every other full rotation (each goes first as
    often as the other). direct,floor,jetpero -> d f j / f j d / d j f / j f d / ..."""
    pair = [name for name in names if name in ("floor", "jetpero")]
    blocks: list[list[str]] = []
    for name in names:
        if name not in pair:
            blocks.append([name])
        elif pair not in blocks:
            blocks.append(pair)
    orders = []
    for index in range(rounds):
        shift, flip = index % len(blocks), (index // len(blocks)) % 2 == 1
        rotated = blocks[shift:] + blocks[:shift]
        orders.append([name for block in rotated for name in (block[::-1] if flip else block)])
    return orders


def json_rounds(
    targets: list[Target], args: argparse.Namespace, up_pids: list[int], results: dict[str, dict[str, Any]]
) -> None:
    body = CHAT_BODY.encode()
    for target in targets:  # warm-up: workers, pools, caches
        asyncio.run(json_load(target.base + "/v1/chat/completions", target.headers, body, 10, 1.0, 100_000))
        results[target.name]["json"] = {"rounds": []}
    by_name = {target.name: target for target in targets}
    for index, order in enumerate(round_orders(list(by_name), args.rounds), 1):
        background = quiet_machine(args)
        line = f"round {index}/{args.rounds} (idle busy {background['busy']}% steal {background['steal']}%):"
        print(line, end="", flush=True)
        entries = {
            name: {"round": index, "position": position, "idle_machine_cpu_pct": background}
            for position, name in enumerate(order)
        }
        for conc in (1, 50):  # each concurrency across all targets in turn: the pairs compared are back to back
            for name in order:
                target = by_name[name]
                groups = {"upstream": up_pids, "proxy": target.proxy_pids}
                load = json_load(target.base + "/v1/chat/completions", target.headers, body, conc, args.json_seconds,
                                 1_000_000)  # fmt: skip
                try:
                    entries[name][f"c{conc}"] = measure(load, groups)
                except Exception as exc:  # keep the other tests going
                    entries[name][f"c{conc}"] = {"error": repr(exc)}
                time.sleep(0.5)
        for name in order:
            results[name]["json"]["rounds"].append(entries[name])
            c1, c50 = entries[name]["c1"], entries[name]["c50"]
            print(f" {name} {c1.get('p50_ms', 'ERR')} ms / {c50.get('rps', 'ERR')} rps;", end="", flush=True)
        print(flush=True)
    for target in targets:
        results[target.name]["json"]["median"] = json_median(results[target.name]["json"]["rounds"])


def json_median(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Median over rounds of rps/p50/p99 (and of each CPU column) per concurrency; errors summed."""
    out: dict[str, Any] = {}
    for key in ("c1", "c50"):
        tests = [entry[key] for entry in rounds if "rps" in entry.get(key, {})]
        if not tests:
            continue
        cpu = [test["cpu_pct"] for test in tests]
        out[key] = {
            "rounds": len(tests),
            "rps": round(statistics.median(test["rps"] for test in tests), 1),
            **{m: round(statistics.median(test[m] for test in tests), 2) for m in ("p50_ms", "p99_ms")},
            "errors": sum(test["errors"] for test in tests) + len(rounds) - len(tests),
            "cpu_pct": {col: round(statistics.median(c[col] for c in cpu)) for col in CPU_COLUMNS.split("/")},
        }
    return out


def sse_tests(
    targets: list[Target], args: argparse.Namespace, up_pids: list[int], results: dict[str, dict[str, Any]]
) -> None:
    for streams, rate in args.sse:
        label, events = f"{streams}x{rate:g}", round(rate * args.sse_seconds)
        for target in targets:
            background = quiet_machine(args)
            print(f"SSE {target.name}: {streams} streams x {events} events at {rate:g}/s", flush=True)
            coro = sse_load(target.base + "/sse", target.headers, streams, events, 1 / rate)
            fds: dict[str, int] = {}
            timer = _fds_later(target.proxy_pids, 1 + args.sse_seconds / 2, fds)
            try:
                result = measure(coro, {"upstream": up_pids, "proxy": target.proxy_pids})
            except Exception as exc:  # keep the other tests going
                result = {"error": repr(exc)}
            timer.cancel()
            if target.proxy_pids and result.get("events_received") and "cpu_seconds" in result:
                # streams opened included: the proxy's CPU per relayed event, comparable between targets
                result["proxy_cpu_us_per_event"] = round(
                    result["cpu_seconds"]["proxy"] / result["events_received"] * 1e6
                )
            result |= {"rate_per_s": rate, "idle_machine_cpu_pct": background} | ({"worker_fds": fds} if fds else {})
            results[target.name].setdefault("sse", {})[label] = result
            time.sleep(1.0)


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
TARGET_ADDED_P50_MS = 0.3
TARGET_THROUGHPUT_PCT = 90.0
TARGET_SSE = (1000, 20.0, 100.0)  # streams, events/s, p99 gap ms


def _cpu(cpu: dict[str, int]) -> str:
    return "/".join(str(cpu.get(key, "-")) for key in CPU_COLUMNS.split("/"))


def _fmt(value: Any, width: int) -> str:
    return f"{value:>{width}}" if value is not None else f"{'-':>{width}}"


def _spread(values: list[float], digits: int) -> dict[str, Any]:
    return {
        "median": round(statistics.median(values), digits),
        "min": round(min(values), digits),
        "max": round(max(values), digits),
        "rounds": [round(value, digits) for value in values],
    }


def ratios_per_round(results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """floor vs direct and jetpero vs floor, computed within each round, summarised as median and min-max."""
    ratios: dict[str, Any] = {}
    for proxy, base in (("floor", "direct"), ("jetpero", "floor")):
        p_rounds = {e["round"]: e for e in results.get(proxy, {}).get("json", {}).get("rounds", [])}
        b_rounds = {e["round"]: e for e in results.get(base, {}).get("json", {}).get("rounds", [])}
        added, tput = [], []
        for index in sorted(p_rounds.keys() & b_rounds.keys()):
            p, b = p_rounds[index], b_rounds[index]
            if "p50_ms" in p["c1"] and "p50_ms" in b["c1"]:
                added.append(p["c1"]["p50_ms"] - b["c1"]["p50_ms"])
            if "rps" in p["c50"] and b["c50"].get("rps"):
                tput.append(100 * p["c50"]["rps"] / b["c50"]["rps"])
        if added and tput:
            ratios[f"{proxy}_vs_{base}"] = {
                "added_p50_ms_c1": _spread(added, 2),
                "throughput_pct_c50": _spread(tput, 1),
            }
    return ratios


def _sse_ok(sse: dict[str, Any]) -> bool:
    return sse.get("errors") == 0 and sse.get("streams_ok") == sse.get("streams") and sse["gap_p99_ms"] < TARGET_SSE[2]


def _sse_figure(sse: dict[str, Any]) -> str:
    if "streams_ok" not in sse:
        return sse.get("error", "no result")
    return f"{sse['streams_ok']}/{sse['streams']} all-events, p99 gap {sse['gap_p99_ms']} ms"


def verdicts(results: dict[str, dict[str, Any]], ratios: dict[str, Any], args: argparse.Namespace) -> list[str]:
    lines = []
    ratio = ratios.get("jetpero_vs_floor")
    label = f"added p50 at c=1 <= {TARGET_ADDED_P50_MS} ms"
    if ratio:
        added = ratio["added_p50_ms_c1"]
        verdict = "PASS" if added["median"] <= TARGET_ADDED_P50_MS else "FAIL"
        lines.append(f"{label:48} {verdict}  {added['median']:+} ms (rounds {added['min']:+} .. {added['max']:+})")
        tput = ratio["throughput_pct_c50"]
        verdict = "PASS" if tput["median"] >= TARGET_THROUGHPUT_PCT else "FAIL"
        label = f"throughput at c=50 >= {TARGET_THROUGHPUT_PCT:g}% of floor"
        lines.append(f"{label:48} {verdict}  {tput['median']}% (rounds {tput['min']} .. {tput['max']})")
    else:
        lines.append(f"{label:48} n/a   (needs JSON results for floor and jetpero)")
        lines.append(f"{'throughput at c=50 >= 90% of floor':48} n/a   (needs JSON results for floor and jetpero)")
    streams, rate, gap = TARGET_SSE
    label = f">= {streams} SSE x {rate:g}/s delivered, p99 gap < {gap:g} ms"
    load = next((f"{s}x{r:g}" for s, r in args.sse if s >= streams and r >= rate), None)
    jet, floor = (results.get(name, {}).get("sse", {}).get(load or "") for name in ("jetpero", "floor"))
    if not jet:
        lines.append(f"{label:48} n/a   (not measured: needs jetpero and an --sse load >= {streams}x{rate:g})")
        return lines
    text = f"{label:48} {'PASS' if _sse_ok(jet) else 'FAIL'}  {load}: {_sse_figure(jet)}"
    if not floor:
        text += "; floor not measured"
    elif _sse_ok(floor):
        text += f"; floor PASS ({_sse_figure(floor)})"
    else:
        text += f"; floor FAIL too ({_sse_figure(floor)}): this machine cannot carry that load"
    lines.append(text)
    return lines


def report(results: dict[str, dict[str, Any]], args: argparse.Namespace) -> tuple[dict[str, Any], list[str]]:
    for name, res in results.items():
        if "error" in res:
            print(f"{name}: {res['error']}")
    json_results = {name: res["json"]["median"] for name, res in results.items() if res.get("json", {}).get("median")}
    if json_results:
        print(f"\nJSON 1 KB POST /v1/chat/completions, median of {args.rounds} rounds x {args.json_seconds:g} s"
              f"{' ' * 8}CPU% at c=50 (of {(os.cpu_count() or 1) * 100}): {CPU_COLUMNS}")  # fmt: skip
        print(f"{'target':8} | {'c=1 req/s':>9} {'p50 ms':>7} {'p99 ms':>7} | "
              f"{'c=50 req/s':>10} {'p50 ms':>7} {'p99 ms':>7} {'err':>5} |")  # fmt: skip
    for name, med in json_results.items():
        c1, c50 = med.get("c1", {}), med.get("c50", {})
        print(
            f"{name:8} | {_fmt(c1.get('rps'), 9)} {_fmt(c1.get('p50_ms'), 7)} {_fmt(c1.get('p99_ms'), 7)} | "
            f"{_fmt(c50.get('rps'), 10)} {_fmt(c50.get('p50_ms'), 7)} {_fmt(c50.get('p99_ms'), 7)} "
            f"{_fmt((c1.get('errors') or 0) + (c50.get('errors') or 0), 5)} | {_cpu(c50.get('cpu_pct', {}))}"
        )
    if any("sse" in res for res in results.values()):
        print(f"\nSSE, {args.sse_seconds:g} s per load (streams x events/s)")
        print(f"{'load':8} {'target':8} | {'all-events':>10} {'errors':>6} | {'gap p50':>7} {'p99':>6} {'max':>6} | "
              f"{'delay p50':>9} {'p99':>7} | {'1st event p99':>13} | {'proxy us/event':>14} | "
              f"CPU% {CPU_COLUMNS}; fds per proxy pid")  # fmt: skip
    for streams, rate in args.sse:
        load = f"{streams}x{rate:g}"
        for name, res in results.items():
            if not (sse := res.get("sse", {}).get(load)):
                continue
            if "streams_ok" not in sse:
                print(f"{load:8} {name:8} | {sse.get('error')}")
                continue
            print(
                f"{load:8} {name:8} | {str(sse['streams_ok']) + '/' + str(sse['streams']):>10} {sse['errors']:>6} | "
                f"{sse['gap_p50_ms']:>7} {sse['gap_p99_ms']:>6} {sse['gap_max_ms']:>6} | "
                f"{sse['delay_p50_ms']:>9} {sse['delay_p99_ms']:>7} | {sse['first_event_p99_ms']:>13} | "
                f"{_fmt(sse.get('proxy_cpu_us_per_event'), 14)} | {_cpu(sse['cpu_pct'])} {sse.get('worker_fds', '')}"
                + (f" errors: {sse['error_kinds']}" if sse["error_kinds"] else "")
            )
    tests = [
        (f"{name} r{entry['round']} {key}", entry[key])
        for name, res in results.items()
        for entry in res.get("json", {}).get("rounds", [])
        for key in ("c1", "c50")
        if "cpu_pct" in entry[key]
    ]
    tests += [(f"{name} sse {load}", sse) for name, res in results.items() for load, sse in res.get("sse", {}).items()]
    noisy = [(label, t["cpu_pct"]) for label, t in tests if t.get("cpu_pct", {}).get("others", 0) > QUIET_BUSY_PCT]
    if noisy:
        worst = max(noisy, key=lambda item: item[1]["others"])
        print(f"\nWARNING: other processes used > {QUIET_BUSY_PCT}% of a core in {len(noisy)} of {len(tests)} tests "
              f"(worst {worst[0]}: {worst[1]['others']}% {worst[1]['top_others']}); medians absorb some of it")  # fmt: skip
    ratios = ratios_per_round(results)
    if ratios:
        print()
    for key, ratio in ratios.items():
        added, tput = ratio["added_p50_ms_c1"], ratio["throughput_pct_c50"]
        print(
            f"{key}: {added['median']:+} ms p50 at c=1 (per round {added['min']:+} .. {added['max']:+}); "
            f"{tput['median']}% throughput at c=50 (per round {tput['min']} .. {tput['max']})"
        )
    lines = verdicts(results, ratios, args)
    print("\nVERDICT (JetPero targets)")
    for line in lines:
        print("  " + line)
    return ratios, lines


# ---- main ------------------------------------------------------------------------------------------------------


def sse_loads(text: str) -> list[tuple[int, float]]:
    """'1000x20,1000x5' -> [(1000, 20.0), (1000, 5.0)]"""
    loads = []
    for item in text.split(","):
        streams, sep, rate = item.strip().lower().partition("x")
        try:
            loads.append((int(streams), float(rate)))
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected STREAMSxRATE, e.g. 1000x20, got {item!r}") from None
        if not sep or loads[-1][0] < 1 or loads[-1][1] <= 0:
            raise argparse.ArgumentTypeError(f"expected STREAMSxRATE, e.g. 1000x20, got {item!r}")
    return loads


def main() -> int:
    parser = argparse.ArgumentParser(description="JetPero side-by-side benchmark")
    parser.add_argument("--only", default=",".join(ALL_TARGETS), help="comma list of: direct, floor, jetpero")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved JSON rounds (medians reported)")
    parser.add_argument("--json-seconds", type=float, default=3.0, help="per JSON test (c=1, c=50) per round")
    parser.add_argument(
        "--sse", type=sse_loads, default=sse_loads("1000x20,1000x5"), help="SSE loads STREAMSxRATE,... (events/s)"
    )
    parser.add_argument("--sse-seconds", type=float, default=8.0, help="per SSE load per target")
    parser.add_argument("--skip-json", action="store_true")
    parser.add_argument("--skip-sse", action="store_true")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers for the floor")
    parser.add_argument(
        "--wait-quiet",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help=f"before each round / SSE test, wait up to this long for the machine to be idle (< {QUIET_BUSY_PCT}%% busy)",
    )
    parser.add_argument("--output", type=Path, default=RESULTS / "latest.json")
    args = parser.parse_args()
    targets = [t.strip() for t in args.only.split(",") if t.strip()]
    if unknown := set(targets) - set(ALL_TARGETS):
        parser.error(f"unknown targets: {sorted(unknown)}")
    if args.rounds < 1:
        parser.error("--rounds must be >= 1")

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    started = time.monotonic()
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
        running: list[Target] = []
        for name in targets:
            try:
                running.append(start_target(name, up_url, args, procs, stops))
            except NotImplementedError as exc:
                results[name] = {"error": f"skipped: {exc}"}
            except Exception as exc:  # report it, go on with the other targets
                print(f"{name}: FAILED to start {exc!r}", flush=True)
                results[name] = {"error": repr(exc)}
        # Every target gets the same request: an SDK sends its Authorization header whatever its
        # base URL (JetPero's project token here), and the floor and the upstream pass or ignore it.
        shared = next((target.headers for target in running if target.headers), {})
        for target in running:
            target.headers = shared
            results[target.name] = {"base_url": target.base, "proxy_pids": target.proxy_pids}
        if running and not args.skip_json:
            json_rounds(running, args, up_pids, results)
        if running and not args.skip_sse:
            sse_tests(running, args, up_pids, results)
    finally:
        for stop in reversed(stops):
            try:
                stop()
            except Exception as exc:  # keep stopping the rest
                print(f"stop failed: {exc!r}", file=sys.stderr)
        for proc, sig in reversed(procs):
            stop_process(proc, sig)
    results = {name: results[name] for name in targets if name in results}
    ratios, verdict_lines = report(results, args)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    elapsed = round(time.monotonic() - started)
    document = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "elapsed_s": elapsed,
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "targets": results,
        "ratios": ratios,
        "verdicts": verdict_lines,
    }
    args.output.write_text(json.dumps(document, indent=2) + "\n")
    shown = args.output.relative_to(ROOT) if args.output.is_relative_to(ROOT) else args.output
    print(f"\nwrote {shown}; total {elapsed // 60}m{elapsed % 60:02d}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
