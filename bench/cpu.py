"""CPU accounting from /proc: what each process group, interrupts and the hypervisor used during a test."""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

_CLK_TCK = os.sysconf("SC_CLK_TCK")
QUIET_BUSY_PCT = 15  # machine CPU busy (% of one core) above which figures are flagged as noisy
CPU_COLUMNS = "client/upstream/proxy/irq/others/steal"


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


def quiet_machine(args: argparse.Namespace) -> dict[str, int]:
    """Machine CPU while no test runs (should be near 0); waits up to --wait-quiet for it to drop."""
    background = machine_background()
    deadline = time.monotonic() + args.wait_quiet
    while background["busy"] > QUIET_BUSY_PCT and time.monotonic() < deadline:
        background = machine_background()
    return background
