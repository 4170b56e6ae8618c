"""The same apps under three WSGI servers, side by side: gunicorn+gevent, uWSGI (pyuwsgi, gevent loop), granian (WSGI).

    .venv/bin/python -m bench.servers                                  # ~5 minutes
    .venv/bin/python -m bench.servers --rounds 1 --json-seconds 1 --sse 50x5 --sse-seconds 2   # a check

The floor (bench.floor) and JetPero (wsgi:app) each run under every server of ``--servers`` with the same worker
count (``--workers``, 2), all up together, against one bench upstream. Then, with bench.json_rounds and bench.sse
(the code bench.run uses): interleaved JSON rounds at c=1 and c=50, SSE at ``--sse`` (1000x20: streams x
events/s), and a client-disconnect test: ``--disconnect-streams`` long SSE streams opened, each read until its
second event, all closed by the client; the upstream connections that close meanwhile are counted from
/proc/net/tcp until as many as the streams are gone (or 10 s). Ratios are to gunicorn, same app, per JSON round (median, min-max).

How each server is run (SERVERS below):
- gunicorn: ``-k gevent``, 4,000 worker connections; JetPero with its own gunicorn.conf.py.
- uWSGI: ``--gevent 4000`` with gevent's monkey patching before the app loads (what gunicorn's gevent worker
  does), lazy apps (loaded after the fork), behind uWSGI's own HTTP router (``--http --http-keepalive
  --http-auto-chunked``, a third process, talking uwsgi protocol to the workers over a unix socket).
  ``--http-socket`` serves HTTP from the workers themselves but keeps no connection alive, and
  ``--http11-socket`` keeps them alive but sends a streamed response of unknown length with neither
  chunking nor a close (the client never sees its end): neither can carry both the JSON and the SSE loads.
- granian: ``--interface wsgi``, no gevent: each request, a stream included, holds one of ``--blocking-threads``
  OS threads for its whole life; 1,024 per worker (the default would be backpressure/2 = 256).
Every process is stopped by PID at the end. Results: printed tables and bench/results/servers.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.cpu import listening_pids
from bench.json_rounds import json_rounds
from bench.load import exit_on_signals, raise_nofile_limit
from bench.run import sse_loads
from bench.sse import sse_tests
from bench.targets import RESULTS, Target, start_process, wait_http
from tools import procs
from tools.procs import free_port

BIN = Path(sys.executable).parent
SERVER_NAMES = ("gunicorn", "uwsgi", "granian")
APP_NAMES = ("floor", "jetpero")


def server_argv(server: str, module: str, port: int, workers: int, sockets: Path) -> list[str]:
    """The command line serving WSGI `module` ("pkg.mod:app") under `server` on 127.0.0.1:`port`."""
    if server == "gunicorn":
        if module == "wsgi:app":  # JetPero's own settings (gevent workers; JETPERO_BIND, JETPERO_WORKERS)
            return [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", module]
        # -c /dev/null: not the repo's gunicorn.conf.py (JetPero's); its worker settings repeated (as bench.targets)
        return [sys.executable, "-m", "gunicorn", "-c", "/dev/null", "-k", "gevent", "-w", str(workers),
                "--worker-connections", "4000", "--keep-alive", "75", "--graceful-timeout", "3",
                "--log-level", "warning", "--bind", f"127.0.0.1:{port}", module]  # fmt: skip
    if server == "uwsgi":
        return [str(BIN / "uwsgi"), "--http", f"127.0.0.1:{port}", "--http-keepalive", "--http-auto-chunked",
                "--socket", str(sockets / f"uwsgi-{port}.sock"), "--master", "--processes", str(workers),
                "--gevent", "4000", "--gevent-early-monkey-patch", "--lazy-apps", "--die-on-term", "--need-app",
                "--disable-logging", "--ignore-sigpipe", "--ignore-write-errors", "--disable-write-exception",
                "--listen", "4096", "--buffer-size", "32768", "--module", module]  # fmt: skip
    if server == "granian":
        return [str(BIN / "granian"), "--interface", "wsgi", "--http", "1", "--host", "127.0.0.1", "--port",
                str(port), "--workers", str(workers), "--blocking-threads", "1024", "--backpressure", "1024",
                "--backlog", "4096", "--no-access-log", "--log-level", "warning", module]  # fmt: skip
    raise ValueError(f"unknown server {server!r}")


def installed(server: str) -> bool:
    return server == "gunicorn" or (BIN / server).exists()


def proxy_pids(port: int) -> list[int]:
    """The processes listening on `port` and all their descendants (uWSGI's workers listen on a unix socket)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:  # any thread may have started a child (granian's workers): ppid from stat, not task/children
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    found: list[int] = []
    todo = listening_pids(port)
    while todo:
        pid = todo.pop()
        if pid not in found:
            found.append(pid)
            todo += [child for child, parent in parents.items() if parent == pid]
    return sorted(found)


def start(
    server: str,
    app: str,
    up_url: str,
    args: argparse.Namespace,
    sockets: Path,
    processes: list[tuple[subprocess.Popen[bytes], int]],
    stops: list[Callable[[], None]],
) -> Target:
    name = f"{app}@{server}"
    if app == "floor":
        port = free_port()
        proc = start_process(name, server_argv(server, "bench.floor:app", port, args.workers, sockets),
                             {"BENCH_UPSTREAM": up_url})  # fmt: skip
        processes.append((proc, signal.SIGINT))
        base, headers = f"http://127.0.0.1:{port}", {}
        wait_http(base + "/v1/chat/completions", {}, timeout=60, proc=proc)
    else:
        from bench.jetpero_target import start_jetpero

        env = {"JETPERO_WORKERS": str(args.workers)}
        if server != "gunicorn":  # gunicorn.conf.py makes one; the same metrics mode for every server
            env["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="jetpero-metrics-", dir=sockets)
        base, headers, stop = start_jetpero(
            up_url, env, server=lambda port: server_argv(server, "wsgi:app", port, args.workers, sockets)
        )
        stops.append(stop)
        wait_http(base + "/v1/chat/completions", headers, timeout=60)
    port = int(base.split(":")[2].split("/")[0])
    target = Target(name, base, headers, proxy_pids(port))
    print(f"{name}: {base} (pids {target.proxy_pids})", flush=True)
    return target


# -- client disconnects --------------------------------------------------------------------------------------


def upstream_connections(port: int) -> int:
    """Established TCP connections whose local end is 127.0.0.1:`port` (the upstream's side)."""
    count = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[3] == "01" and int(fields[1].rsplit(":", 1)[1], 16) == port:
            count += 1
    return count


async def _open_and_drop(url: str, headers: dict[str, str], streams: int, up_port: int) -> dict[str, Any]:
    host, port = url.split("/")[2].rsplit(":", 1)
    path = "/" + url.split("/", 3)[3] + "?events=600&interval=0.05"  # 30 s streams: the client leaves long before
    raw = (f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nAccept: text/event-stream\r\n"
           + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n").encode()  # fmt: skip
    writers: list[asyncio.StreamWriter] = []

    async def one() -> bool:
        reader, writer = await asyncio.open_connection(host, int(port))
        writers.append(writer)
        writer.write(raw)
        data = b""
        while data.count(b"data: ") < 2:  # the second event has begun
            chunk = await reader.read(65536)
            if not chunk:
                return False
            data += chunk
        return True

    tasks = [asyncio.create_task(one()) for _ in range(streams)]
    done, pending = await asyncio.wait(tasks, timeout=15)
    for task in pending:
        task.cancel()
    opened = sum(1 for task in done if task.exception() is None and task.result())
    # The proxies' pools hold idle upstream connections that a stream may reuse, so what is counted is how many
    # established upstream connections go away once the clients have: the streams' own, if the proxy closes them.
    before = upstream_connections(up_port)
    for writer in writers:
        writer.transport.abort()  # the client goes away (RST, as a killed client's kernel would send)
    dropped = time.monotonic()
    after: dict[str, int] = {}
    all_closed_ms = None
    left = opened
    while time.monotonic() - dropped < 10:
        await asyncio.sleep(0.05)
        left = max(0, opened - (before - upstream_connections(up_port)))
        elapsed = time.monotonic() - dropped
        for mark in (0.5, 1.0, 5.0):
            if elapsed >= mark and f"left_after_{mark:g}s" not in after:
                after[f"left_after_{mark:g}s"] = left
        if left == 0:
            all_closed_ms = round(elapsed * 1000)
            break
    return {
        "streams": streams,
        "streams_opened": opened,
        "all_upstream_closed_ms": all_closed_ms,
        **after,
        "left_after_10s": None if all_closed_ms is not None else left,
    }


def disconnect_test(targets: list[Target], args: argparse.Namespace, up_port: int, results: dict) -> None:
    for target in targets:
        print(f"disconnect {target.name}: {args.disconnect_streams} streams dropped by the client", flush=True)
        try:
            result = asyncio.run(_open_and_drop(target.base + "/sse", target.headers, args.disconnect_streams, up_port))
        except Exception as exc:  # keep the other tests going
            result = {"error": repr(exc)}
        results[target.name]["disconnect"] = result
        print(f"  {result}", flush=True)
        time.sleep(1.0)


# -- report ----------------------------------------------------------------------------------------------------


def _ratio_rows(results: dict[str, dict[str, Any]], servers: list[str]) -> list[str]:
    lines = []
    for app in APP_NAMES:
        base = results.get(f"{app}@gunicorn", {}).get("json", {}).get("rounds", [])
        by_round = {entry["round"]: entry for entry in base}
        for server in servers:
            name = f"{app}@{server}"
            entry = results.get(name, {})
            if "json" not in entry:
                if name in results:
                    lines.append(f"| {name} | {entry.get('error', 'not run')} |")
                continue
            med = entry["json"]["median"]
            ratios: dict[str, list[float]] = {"c1": [], "c50": []}
            for rnd in entry["json"]["rounds"]:
                ref = by_round.get(rnd["round"], {})
                for key in ratios:
                    if "rps" in rnd.get(key, {}) and ref.get(key, {}).get("rps"):
                        ratios[key].append(rnd[key]["rps"] / ref[key]["rps"])

            def fmt(values: list[float]) -> str:
                if not values:
                    return "-"
                return f"{statistics.median(values):.2f}x ({min(values):.2f}-{max(values):.2f})"

            c1, c50 = med.get("c1", {}), med.get("c50", {})
            lines.append(
                f"| {name} | {c1.get('p50_ms', '-')} | {c1.get('rps', '-')} | {fmt(ratios['c1'])} | "
                f"{c50.get('rps', '-')} | {c50.get('p99_ms', '-')} | {fmt(ratios['c50'])} | "
                f"{c1.get('errors', 0) + c50.get('errors', 0)} |"
            )
            entry["ratios_to_gunicorn"] = {
                key: round(statistics.median(values), 3) if values else None for key, values in ratios.items()
            }
    return lines


def report(results: dict[str, dict[str, Any]], servers: list[str], sse_labels: list[str]) -> list[str]:
    out = ["| target | c=1 p50 ms | c=1 req/s | c=1 vs gunicorn | c=50 req/s | c=50 p99 ms | c=50 vs gunicorn "
           "| errors |", "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    out += _ratio_rows(results, servers)
    for label in sse_labels:
        out += ["", f"SSE {label}:", "",
                "| target | events received / expected | streams ok | gap p99 ms | delay p99 ms | first event p99 ms "
                "| proxy CPU µs/event | errors |", "|---|---|---|---|---|---|---|---|"]  # fmt: skip
        for name, entry in results.items():
            sse = entry.get("sse", {}).get(label)
            if sse is None:
                continue
            if "error" in sse:
                out.append(f"| {name} | {sse['error']} |")
                continue
            out.append(
                f"| {name} | {sse['events_received']} / {sse['events_expected']} | {sse['streams_ok']} | "
                f"{sse['gap_p99_ms']} | {sse['delay_p99_ms']} | {sse['first_event_p99_ms']} | "
                f"{sse.get('proxy_cpu_us_per_event', '-')} | {sse['error_kinds'] or 0} |"
            )
    out += ["", "Client disconnects:", "",
            "| target | streams opened | left open after 0.5 s | after 1 s | all closed after ms |",
            "|---|---|---|---|---|"]  # fmt: skip
    for name, entry in results.items():
        gone = entry.get("disconnect")
        if gone is None:
            continue
        if "error" in gone:
            out.append(f"| {name} | {gone['error']} |")
            continue
        closed = gone["all_upstream_closed_ms"]
        out.append(
            f"| {name} | {gone['streams_opened']} | {gone.get('left_after_0.5s', 0)}"
            f" | {gone.get('left_after_1s', 0)} | {closed if closed is not None else 'not in 10 s'} |"
        )
    return out


def verdicts(results: dict[str, dict[str, Any]], servers: list[str], sse_labels: list[str]) -> list[str]:
    """The issue's rule, per server and app: >= 1.3x gunicorn's c=50 throughput, SSE delivery equal or better (every
    event, as many as gunicorn, p99 gap and delay within 10% of gunicorn's), every upstream stream closed after the
    clients left (within 10 s). The fault tests are the rule's last part: not run here."""
    lines = []
    for server in servers:
        if server == "gunicorn":
            continue
        for app in APP_NAMES:
            name, ref = f"{app}@{server}", f"{app}@gunicorn"
            entry, base = results.get(name, {}), results.get(ref, {})
            reasons = []
            ratio = entry.get("ratios_to_gunicorn", {}).get("c50")
            if ratio is None or ratio < 1.3:
                reasons.append(f"c=50 throughput {ratio}x < 1.3x")
            for label in sse_labels:
                mine, theirs = entry.get("sse", {}).get(label, {}), base.get("sse", {}).get(label, {})
                got, want = mine.get("events_received", 0), mine.get("events_expected", 1)
                if got < want:
                    reasons.append(f"SSE {label}: {want - got} events lost")
                if got < theirs.get("events_received", 0):
                    reasons.append(f"SSE {label}: fewer events than gunicorn ({got} vs {theirs['events_received']})")
                for key in ("gap_p99_ms", "delay_p99_ms"):  # delivery lag: no worse than gunicorn's (10%: noise)
                    if key in mine and key in theirs and mine[key] > 1.1 * theirs[key]:
                        reasons.append(f"SSE {label}: {key} {mine[key]} vs gunicorn's {theirs[key]}")
            gone = entry.get("disconnect", {})
            if gone and gone.get("all_upstream_closed_ms") is None:
                reasons.append(f"disconnect: upstream streams left open after 10 s: {gone.get('left_after_10s')}")
            lines.append(f"{name}: " + ("QUALIFIES" if not reasons else "does not qualify: " + "; ".join(reasons)))
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description="The floor and JetPero under gunicorn, uWSGI and granian")
    parser.add_argument("--servers", default=",".join(SERVER_NAMES), help="comma list of: gunicorn, uwsgi, granian")
    parser.add_argument("--apps", default=",".join(APP_NAMES), help="comma list of: floor, jetpero")
    parser.add_argument("--workers", type=int, default=2, help="worker processes of every server")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved JSON rounds")
    parser.add_argument("--json-seconds", type=float, default=2.0, help="per JSON test (c=1, c=50) per round")
    parser.add_argument("--sse", type=sse_loads, default=sse_loads("1000x20"), help="SSE loads STREAMSxRATE,...")
    parser.add_argument("--sse-seconds", type=float, default=6.0, help="per SSE load per target")
    parser.add_argument("--disconnect-streams", type=int, default=200, help="streams dropped by the client (0: skip)")
    parser.add_argument("--skip-json", action="store_true")
    parser.add_argument("--skip-sse", action="store_true")
    parser.add_argument("--wait-quiet", type=float, default=0.0, metavar="SECONDS", help="as in bench.run")
    parser.add_argument("--output", type=Path, default=RESULTS / "servers.json")
    args = parser.parse_args()
    servers = [s.strip() for s in args.servers.split(",") if s.strip()]
    apps = [a.strip() for a in args.apps.split(",") if a.strip()]
    if unknown := (set(servers) - set(SERVER_NAMES)) | (set(apps) - set(APP_NAMES)):
        parser.error(f"unknown servers or apps: {sorted(unknown)}")

    exit_on_signals()
    started = time.monotonic()
    print(f"open files limit: {raise_nofile_limit()}; cpus: {os.cpu_count()}", flush=True)
    processes: list[tuple[subprocess.Popen[bytes], int]] = []
    stops: list[Callable[[], None]] = []
    results: dict[str, dict[str, Any]] = {}
    shm = "/dev/shm"  # noqa: S108 - a private mkdtemp directory inside it
    sockets = Path(tempfile.mkdtemp(prefix="jetpero-servers-", dir=shm if os.path.isdir(shm) else None))
    try:
        up_port = free_port()
        upstream = start_process("upstream", [sys.executable, "-m", "bench.upstream", "--port", str(up_port)])
        processes.append((upstream, signal.SIGTERM))
        up_url = f"http://127.0.0.1:{up_port}"
        wait_http(up_url + "/v1/chat/completions", {}, proc=upstream)
        running: list[Target] = []
        for app in apps:
            for server in servers:
                name = f"{app}@{server}"
                if not installed(server):
                    results[name] = {"error": f"skipped: {server} not installed"}
                    continue
                try:
                    running.append(start(server, app, up_url, args, sockets, processes, stops))
                except Exception as exc:  # report it, go on with the others
                    print(f"{name}: FAILED to start {exc!r}", flush=True)
                    results[name] = {"error": repr(exc)}
        shared = next((target.headers for target in running if target.headers), {})
        for target in running:
            target.headers = target.headers or shared  # the floor passes JetPero's token on, as an SDK would send it
            results[target.name] = {"base_url": target.base, "proxy_pids": target.proxy_pids}
        if running and not args.skip_json:
            json_rounds(running, args, [upstream.pid], results)
        if running and not args.skip_sse:
            sse_tests(running, args, [upstream.pid], results)
        if running and args.disconnect_streams:
            disconnect_test(running, args, up_port, results)
    finally:
        for stop in reversed(stops):
            try:
                stop()
            except Exception as exc:  # keep stopping the rest
                print(f"stop failed: {exc!r}", file=sys.stderr)
        for proc, sig in reversed(processes):
            procs.stop(proc, 8.0, sig)
        shutil.rmtree(sockets, ignore_errors=True)
    labels = [f"{streams}x{rate:g}" for streams, rate in args.sse] if not args.skip_sse else []
    order = [f"{app}@{server}" for app in apps for server in servers]
    results = {name: results[name] for name in order if name in results}
    table = report(results, servers, labels)
    verdict = verdicts(results, servers, labels)
    print("\n" + "\n".join(table) + "\n\n" + "\n".join(verdict))
    elapsed = round(time.monotonic() - started)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    settings = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    document = {"when": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "elapsed_s": elapsed, "settings": settings,
                "commands": {s: server_argv(s, "MODULE", 0, args.workers, Path("SOCKETS")) for s in servers},
                "targets": results, "table": table, "verdicts": verdict}  # fmt: skip
    args.output.write_text(json.dumps(document, indent=2) + "\n")
    print(f"\nwrote {args.output}; total {elapsed // 60}m{elapsed % 60:02d}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
