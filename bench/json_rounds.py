"""JSON tests in interleaved rounds: every target at c=1 (the first body size), then at c=50 for each body size
(`--body-sizes`, bench.bodies), the order of the targets rotating from round to round."""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from typing import Any

from bench.bodies import body, label
from bench.cpu import CPU_COLUMNS, measure, quiet_machine
from bench.load import json_load
from bench.targets import CHAT_BODY, Target


def round_orders(names: list[str], rounds: int) -> list[list[str]]:
    """Target order of each round: rotated each round, floor and jetpero kept adjacent as one block (so their ratio
    compares two back-to-back measurements), the block flipped on every other full rotation (each goes first as
    often as the other). direct,floor,jetpero -> d f j / f j d / d j f / j f d / ..."""
    pair = [name for name in names if name in ("floor", "jetpero", "nousage", "budget")]  # compared back to back
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


def test_keys(body_sizes: list[int]) -> list[tuple[str, int, int]]:
    """(result key, concurrency, body size) of each test in a round: c=1 at the first size, c=50 at
    every size. The first size's keys are "c1" and "c50" (as before sizes); the others' "c50_1k"..."""
    first = body_sizes[0]
    return [("c1", 1, first)] + [
        ("c50" if size == first else f"c50_{label(size)}", 50, size) for size in dict.fromkeys(body_sizes)
    ]


def json_rounds(
    targets: list[Target], args: argparse.Namespace, up_pids: list[int], results: dict[str, dict[str, Any]]
) -> None:
    sizes = getattr(args, "body_sizes", None) or [len(CHAT_BODY)]
    bodies = {size: body(size) for size in sizes}
    tests = test_keys(sizes)
    for target in targets:  # warm-up: workers, pools, caches
        for data in bodies.values():
            asyncio.run(json_load(target.base + "/v1/chat/completions", target.headers, data, 10, 1.0, 100_000))
        results[target.name]["json"] = {"rounds": [], "body_sizes": {key: size for key, _, size in tests}}
    by_name = {target.name: target for target in targets}
    for index, order in enumerate(round_orders(list(by_name), args.rounds), 1):
        background = quiet_machine(args)
        line = f"round {index}/{args.rounds} (idle busy {background['busy']}% steal {background['steal']}%):"
        print(line, end="", flush=True)
        entries = {
            name: {"round": index, "position": position, "idle_machine_cpu_pct": background}
            for position, name in enumerate(order)
        }
        for key, conc, size in tests:  # each test across all targets in turn: the pairs compared are back to back
            for name in order:
                target = by_name[name]
                groups = {"upstream": up_pids, "proxy": target.proxy_pids}
                load = json_load(target.base + "/v1/chat/completions", target.headers, bodies[size], conc,
                                 args.json_seconds, 1_000_000)  # fmt: skip
                try:
                    entries[name][key] = measure(load, groups)
                except Exception as exc:  # keep the other tests going
                    entries[name][key] = {"error": repr(exc)}
                time.sleep(0.5)
        for name in order:
            results[name]["json"]["rounds"].append(entries[name])
            figures = " / ".join(f"{entries[name][key].get('rps', 'ERR')}" for key, conc, _ in tests if conc == 50)
            print(f" {name} {entries[name]['c1'].get('p50_ms', 'ERR')} ms / {figures} rps;", end="", flush=True)
        print(flush=True)
    for target in targets:
        results[target.name]["json"]["median"] = json_median(results[target.name]["json"]["rounds"])


def json_median(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Median over rounds of rps/p50/p99 (and of each CPU column) per concurrency; errors summed."""
    out: dict[str, Any] = {}
    keys = [key for key in rounds[0] if key == "c1" or key.startswith("c50")] if rounds else []
    for key in keys:
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
