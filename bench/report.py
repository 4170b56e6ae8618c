"""The printed tables, the per-round ratios and the verdict against JetPero's targets."""

from __future__ import annotations

import argparse
import os
import statistics
from typing import Any

from bench.cpu import CPU_COLUMNS, QUIET_BUSY_PCT

TARGET_ADDED_P50_MS = 0.3
TARGET_THROUGHPUT_PCT = 90.0
TARGET_BODY_THROUGHPUT_PCT = 95.0  # issue 15: at c=50, for every body size, JetPero (and with a budget) vs the floor
TARGET_SSE = (1000, 20.0, 100.0)  # streams, events/s, p99 gap ms
TARGET_USAGE_ADDED_MS = 0.05  # usage logging on vs off
TARGET_USAGE_THROUGHPUT_LOSS_PCT = 3.0


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
    pairs = (
        ("floor", "direct"),
        ("jetpero", "floor"),
        ("jetpero", "nousage"),
        ("budget", "floor"),
        ("budget", "jetpero"),
    )
    for proxy, base in pairs:
        p_rounds = {e["round"]: e for e in results.get(proxy, {}).get("json", {}).get("rounds", [])}
        b_rounds = {e["round"]: e for e in results.get(base, {}).get("json", {}).get("rounds", [])}
        added: list[float] = []
        tput: dict[str, list[float]] = {}  # "c50" (the first body size), "c50_1k", ...
        for index in sorted(p_rounds.keys() & b_rounds.keys()):
            p, b = p_rounds[index], b_rounds[index]
            if "p50_ms" in p["c1"] and "p50_ms" in b["c1"]:
                added.append(p["c1"]["p50_ms"] - b["c1"]["p50_ms"])
            for key in (key for key in p if key.startswith("c50")):
                if "rps" in p[key] and b.get(key, {}).get("rps"):
                    tput.setdefault(key, []).append(100 * p[key]["rps"] / b[key]["rps"])
        if added and tput.get("c50"):
            ratios[f"{proxy}_vs_{base}"] = {
                "added_p50_ms_c1": _spread(added, 2),
                **{f"throughput_pct_{key}": _spread(values, 1) for key, values in tput.items()},
            }
    return ratios


def _sizes(results: dict[str, dict[str, Any]]) -> dict[str, int]:
    """c50 result key -> its body size in bytes, from any target's JSON results."""
    for res in results.values():
        if sizes := res.get("json", {}).get("body_sizes"):
            return {key: size for key, size in sizes.items() if key.startswith("c50")}
    return {"c50": 100}


def _body_verdicts(results: dict[str, dict[str, Any]], ratios: dict[str, Any]) -> list[str]:
    """Throughput at c=50 per body size: JetPero, and JetPero with a budget, against the floor."""
    lines = []
    for proxy in ("jetpero", "budget"):
        ratio = ratios.get(f"{proxy}_vs_floor")
        if not ratio:
            continue
        for key, size in _sizes(results).items():
            if not (tput := ratio.get(f"throughput_pct_{key}")):
                continue
            label = f"{proxy} c=50, {size} B bodies >= {TARGET_BODY_THROUGHPUT_PCT:g}% of floor"
            verdict = "PASS" if tput["median"] >= TARGET_BODY_THROUGHPUT_PCT else "FAIL"
            lines.append(f"{label:48} {verdict}  {tput['median']}% (rounds {tput['min']} .. {tput['max']})")
    return lines


def _sse_ok(sse: dict[str, Any]) -> bool:
    return sse.get("errors") == 0 and sse.get("streams_ok") == sse.get("streams") and sse["gap_p99_ms"] < TARGET_SSE[2]


def _sse_figure(sse: dict[str, Any]) -> str:
    if "streams_ok" not in sse:
        return sse.get("error", "no result")
    return f"{sse['streams_ok']}/{sse['streams']} all-events, p99 gap {sse['gap_p99_ms']} ms"


def _usage_verdicts(ratios: dict[str, Any]) -> list[str]:
    """The cost of usage logging: JetPero against itself with JETPERO_USAGE_LOG=false."""
    ratio = ratios.get("jetpero_vs_nousage")
    label = "usage log: added p50 at c=1, throughput c=50"
    if not ratio:
        return [f"{label:48} n/a   (needs JSON results for jetpero and nousage)"]
    added, tput = ratio["added_p50_ms_c1"], ratio["throughput_pct_c50"]
    ok = added["median"] <= TARGET_USAGE_ADDED_MS and tput["median"] >= 100 - TARGET_USAGE_THROUGHPUT_LOSS_PCT
    return [
        f"{label:48} {'PASS' if ok else 'FAIL'}  {added['median']:+} ms (<= {TARGET_USAGE_ADDED_MS}), "
        f"{tput['median']}% (>= {100 - TARGET_USAGE_THROUGHPUT_LOSS_PCT:g}%; rounds {tput['min']} .. {tput['max']})"
    ]


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
    lines.extend(_usage_verdicts(ratios))
    lines.extend(_body_verdicts(results, ratios))
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
        print(f"\nJSON POST /v1/chat/completions (~1 KB answers), median of {args.rounds} rounds x {args.json_seconds:g} s"
              f"{' ' * 8}CPU% at c=50 (of {(os.cpu_count() or 1) * 100}): {CPU_COLUMNS}")  # fmt: skip
        print(f"{'target':8} | {'c=1 req/s':>9} {'p50 ms':>7} {'p99 ms':>7} | "
              f"{'c=50 req/s':>10} {'p50 ms':>7} {'p99 ms':>7} {'err':>5} |")  # fmt: skip
    sizes = _sizes(results)
    for key, size in sizes.items():
        if len(sizes) > 1 or size != 100:
            print(f"-- {size} B request bodies" + ("" if key == "c50" else " (c=50 only)"))
        for name, med in json_results.items():
            c1, c50 = med.get("c1", {}) if key == "c50" else {}, med.get(key, {})
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
        for name, size in _sizes(results).items():
            if name != "c50" and (tput := ratio.get(f"throughput_pct_{name}")):
                print(f"{' ' * len(key)}  {size} B bodies: {tput['median']}% throughput at c=50"
                      f" (per round {tput['min']} .. {tput['max']})")  # fmt: skip
    lines = verdicts(results, ratios, args)
    print("\nVERDICT (JetPero targets)")
    for line in lines:
        print("  " + line)
    return ratios, lines
