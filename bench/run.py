"""Side-by-side benchmark: direct upstream, the Flask floor (bench.floor) and JetPero (bench.jetpero_target).

    .venv/bin/python -m bench.run                       # all targets (JetPero skipped if its starter raises NotImplemented)
    .venv/bin/python -m bench.run --only floor,jetpero  # comma list of: direct, floor, jetpero, nousage, budget
    .venv/bin/python -m bench.run --rounds 7 --sse 1000x20 --wait-quiet 120
    .venv/bin/python -m bench.run --body-sizes 1k,32k --skip-sse

All selected targets are started first and stay up together, and all get the same requests (with
JetPero's project token in Authorization, as an SDK would send it to any base URL). The machine is noisy, so JSON tests (POSTs
of ``--body-sizes`` bytes, default 100,1024,32768: bench.bodies; ~1 KB answers) run in interleaved rounds (``--rounds``,
default 5): each round measures every target at concurrency 1 with the first body size, then every target at 50 with each
size in turn (``--json-seconds`` each, default 3), the order rotating from round to round; floor and JetPero are always measured
back to back (which one goes first alternates). Per target the table shows the median over rounds of req/s, p50
and p99. The JetPero-vs-floor ratios (added p50 at c=1, throughput at c=50) are computed within each round and
reported as the median of the per-round ratios with their min-max.

SSE then runs once per target and load (``--sse``, default ``1000x20,1000x5``: streams x events/s, each for
``--sse-seconds``, default 8): streams that got every event, errors, inter-event gap and delivery delay.

The CPU used meanwhile by the load client, the upstream, the proxy (the PIDs listening on its port), interrupts and
any other process (the idle targets included) is recorded with each test. A verdict against JetPero's targets
(added p50 <= 0.3 ms; throughput >= 90% of the floor; 1000 streams x 20/s all delivered with p99 gap < 100 ms)
closes the report, with throughput >= 95% of the floor per body size (issue 15). Results: printed tables and bench/results/latest.json (every round's figures included).
Every process started here is stopped by PID at the end, errors included. A default full run takes ~8 minutes.
The parts: bench.targets (processes), bench.cpu, bench.json_rounds, bench.sse, bench.report (see bench/README.md).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.bodies import DEFAULT_SIZES, sizes
from bench.cpu import QUIET_BUSY_PCT
from bench.json_rounds import json_rounds
from bench.load import exit_on_signals, raise_nofile_limit
from bench.report import report
from bench.sse import sse_tests
from bench.targets import ALL_TARGETS, RESULTS, ROOT, Target, start_process, start_target, wait_http
from tools import procs
from tools.procs import free_port


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
    parser.add_argument("--only", default=",".join(ALL_TARGETS), help=f"comma list of: {', '.join(ALL_TARGETS)}")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved JSON rounds (medians reported)")
    parser.add_argument("--json-seconds", type=float, default=3.0, help="per JSON test (c=1, c=50) per round")
    parser.add_argument(
        "--body-sizes",
        type=sizes,
        default=list(DEFAULT_SIZES),
        help="request body sizes in bytes (1k = 1024), c=50 at each, c=1 at the first (default 100,1024,32768)",
    )
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

    exit_on_signals()
    started = time.monotonic()
    print(f"open files limit: {raise_nofile_limit()}; cpus: {os.cpu_count()}", flush=True)
    processes: list[tuple[subprocess.Popen[bytes], int]] = []
    stops: list[Callable[[], None]] = []
    results: dict[str, dict[str, Any]] = {}
    try:
        up_port = free_port()
        upstream = start_process("upstream", [sys.executable, "-m", "bench.upstream", "--port", str(up_port)])
        processes.append((upstream, signal.SIGTERM))
        up_url = f"http://127.0.0.1:{up_port}"
        wait_http(up_url + "/v1/chat/completions", {}, proc=upstream)
        up_pids = [upstream.pid]
        running: list[Target] = []
        for name in targets:
            try:
                running.append(start_target(name, up_url, args, processes, stops))
            except NotImplementedError as exc:
                results[name] = {"error": f"skipped: {exc}"}
            except Exception as exc:  # report it, go on with the other targets
                print(f"{name}: FAILED to start {exc!r}", flush=True)
                results[name] = {"error": repr(exc)}
        # Every target gets the same request: an SDK sends its Authorization header whatever its
        # base URL (JetPero's project token here), and the floor and the upstream pass or ignore it.
        shared = next((target.headers for target in running if target.headers), {})
        for target in running:
            target.headers = target.headers or shared  # each JetPero its own token
            results[target.name] = {"base_url": target.base, "proxy_pids": target.proxy_pids}
        if running and not args.skip_json:
            json_rounds(running, args, up_pids, results)
        if running and not args.skip_sse:  # a budget reads request bodies: an SSE GET has none
            sse_tests([target for target in running if target.name != "budget"], args, up_pids, results)
    finally:
        for stop in reversed(stops):
            try:
                stop()
            except Exception as exc:  # keep stopping the rest
                print(f"stop failed: {exc!r}", file=sys.stderr)
        for proc, sig in reversed(processes):
            procs.stop(proc, 8.0, sig)
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
