"""What limits cost a proxied call: a token with a rate limit and a budget against one without.

    .venv/bin/python -m bench.limited                   # both stores, ~3 minutes
    .venv/bin/python -m bench.limited --rounds 3 --json-seconds 2 --stores redis

Per store (`embedded`: the SQLite file of one node; `redis`: a redis-server this starts on
loopback), one JetPero (gunicorn, 2 gevent workers) with two tokens of the same project: `free`
(no policy) and `limited` (a per-second rate limit and a daily token budget, both far from
reached, so every call pays the full check: a body read, one store call that takes the window
entry and the budget reservation, and the settlement). Interleaved rounds, the order flipping each round: c=1 then c=50 for both
tokens. Reported: the median over rounds of the per-round added p50 at c=1 and the throughput
ratio at c=50 (limited / free), with their min-max. `make bench` runs it after bench.run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.jetpero_target import issue, start_project
from bench.load import json_load
from bench.targets import CHAT_BODY, RESULTS, start_process, wait_http
from tests.redis_fixtures import start_redis
from tools import procs
from tools.procs import free_port

POLICY = {"limits": {"requests_per_second": 1_000_000, "tokens_per_day": 10**15}}
TARGET_RATIO = 0.90  # limited throughput at c=50 within 10% of free, with Redis on loopback


def _rounds(url: str, tokens: dict[str, dict[str, str]], rounds: int, seconds: float) -> dict[str, Any]:
    body = CHAT_BODY.encode()
    for headers in tokens.values():  # warm-up: workers, caches, pools, the store's connections
        asyncio.run(json_load(url, headers, body, 10, 1.0, 100_000))
    per_round = []
    for index in range(rounds):
        order = list(tokens) if index % 2 == 0 else list(tokens)[::-1]
        entry: dict[str, Any] = {}
        for conc in (1, 50):
            for name in order:
                entry[f"{name}_c{conc}"] = asyncio.run(json_load(url, tokens[name], body, conc, seconds, 1_000_000))
        entry["added_p50_ms"] = round(entry["limited_c1"]["p50_ms"] - entry["free_c1"]["p50_ms"], 3)
        entry["c50_ratio"] = round(entry["limited_c50"]["rps"] / max(entry["free_c50"]["rps"], 1e-9), 3)
        errors = sum(entry[f"{name}_c{conc}"]["errors"] for name in tokens for conc in (1, 50))
        print(
            f"  round {index + 1}/{rounds}: free {entry['free_c1']['p50_ms']} ms / {entry['free_c50']['rps']} rps;"
            f" limited {entry['limited_c1']['p50_ms']} ms / {entry['limited_c50']['rps']} rps; errors {errors}",
            flush=True,
        )
        per_round.append(entry)

    def summary(key: str) -> dict[str, float]:
        values = [entry[key] for entry in per_round]
        return {"median": round(statistics.median(values), 3), "min": min(values), "max": max(values)}

    return {"rounds": per_round, "added_p50_ms": summary("added_p50_ms"), "c50_ratio": summary("c50_ratio")}


def run(up_url: str, stores: list[str], rounds: int, seconds: float) -> dict[str, Any]:
    """Measure each store in turn (one JetPero at a time); every process started is stopped by PID."""
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="jetpero-bench-limits-") as work:
        for store in stores:
            redis = start_redis(Path(work)) if store == "redis" else None
            env = {"JETPERO_REDIS_URL": redis.url} if redis else {}
            try:
                base, operator, project, stop = start_project(up_url, env)
                try:
                    tokens = {
                        name: {"Authorization": f"Bearer {issue(project, operator, policy)['token']}"}
                        for name, policy in (("free", None), ("limited", POLICY))
                    }
                    url = f"{base}/proxy/openai/v1/chat/completions"
                    for headers in tokens.values():
                        wait_http(url, headers)
                    print(f"limits, {store} store:", flush=True)
                    results[store] = _rounds(url, tokens, rounds, seconds)
                finally:
                    stop()
            finally:
                if redis is not None:
                    redis.stop()
    return results


def report(results: dict[str, Any]) -> list[str]:
    lines = ["", "Limits: a token with a rate limit and a budget vs the same project's token without (median, min-max)"]
    for store, figures in results.items():
        added, ratio = figures["added_p50_ms"], figures["c50_ratio"]
        verdict = ""
        if store == "redis":
            verdict = "  [target >= 90%: " + ("met]" if ratio["median"] >= TARGET_RATIO else "NOT met]")
        lines.append(
            f"  {store:9} added p50 at c=1 {added['median']:+.3f} ms ({added['min']:+.3f} to {added['max']:+.3f});"
            f" throughput at c=50 {ratio['median']:.1%} of free ({ratio['min']:.1%} to {ratio['max']:.1%}){verdict}"
        )
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json-seconds", type=float, default=3.0)
    parser.add_argument("--stores", default="embedded,redis", help="comma list of: embedded, redis")
    parser.add_argument("--output", type=Path, default=RESULTS / "limits.json")
    args = parser.parse_args()
    stores = [store.strip() for store in args.stores.split(",") if store.strip()]
    if set(stores) - {"embedded", "redis"} or args.rounds < 1:
        parser.error("--stores is a comma list of embedded, redis; --rounds >= 1")
    port = free_port()
    upstream = start_process("upstream-limits", [sys.executable, "-m", "bench.upstream", "--port", str(port)])
    try:
        wait_http(f"http://127.0.0.1:{port}/v1/chat/completions", {}, proc=upstream)
        results = run(f"http://127.0.0.1:{port}", stores, args.rounds, args.json_seconds)
    finally:
        procs.stop(upstream)
    lines = report(results)
    print("\n".join(lines))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps({"results": results, "report": lines}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
