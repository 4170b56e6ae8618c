"""SSE tests: once per target and load (streams x events/s), with each worker's open descriptors sampled."""

from __future__ import annotations

import argparse
import os
import threading
import time
from typing import Any

from bench.cpu import measure, quiet_machine
from bench.load import sse_load
from bench.targets import Target


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
