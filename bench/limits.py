"""Cost of one counter-store check (µs): the embedded SQLite store (on disk and on /dev/shm) against Redis on loopback.

    .venv/bin/python -m bench.limits                    # starts its own redis-server on a free port
    .venv/bin/python -m bench.limits --n 5000 --processes 2
    JETPERO_REDIS_URL=redis://127.0.0.1:6379/0 .venv/bin/python -m bench.limits

Per store: the median µs (over 3 x n calls) of a bare round trip (`ping`: Redis PING, an empty
SQLite write transaction), of each primitive (a moving-window hit through the `limits` library,
a budget reserve, a stream lease taken and given back), of one `take` (a window and a budget
checked and taken in one call: what admit sends for bench.limited's token) and of a whole admit
+ settle for a token with a rate limit, a token budget and a stream limit (2 store calls: take,
then settle's one pipeline or transaction). `--processes P` also runs P processes admitting at
once and reports the aggregate admits/s. Bounded: `--n` calls per measure (default
2000, at most 50000); every server started here is stopped by PID.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from limits import RateLimitItemPerMinute

from app.rules.policy import Estimate, LimitSet, Policy, Subjects
from app.services.limits import Limits
from app.store.counters import CounterStore
from app.store.redis_counters import RedisCounters
from app.store.sqlite_counters import SQLiteCounters
from tests.redis_fixtures import start_redis

KEYS = 100  # hits rotate over this many keys: each holds <= 3n/KEYS entries in its minute, like a busy token
POLICY = Policy(token=LimitSet(requests_per_minute=1000, tokens_per_day=10**15, concurrent_streams=10**6))


def _make(kind: str, where: str) -> CounterStore:
    return RedisCounters(where) if kind == "redis" else SQLiteCounters(where)


def _micros(call: Callable[[int], object], n: int) -> float:
    """The median µs of one call over 3 x n calls (the median resists this shared machine's stalls)."""
    times = []
    for i in range(3 * n):
        start = time.perf_counter_ns()
        call(i)
        times.append(time.perf_counter_ns() - start)
    return statistics.median(times) / 1000


def measure(store: CounterStore, n: int) -> dict[str, float]:
    item, tag = RateLimitItemPerMinute(1000), uuid.uuid4().hex
    engine = Limits(store)
    tokens = [Subjects(project="bench", token=f"{tag}{k}") for k in range(KEYS)]

    def lease(i: int) -> None:
        store.acquire(f"l{tag}", str(i), 10**6, 60)
        store.settle([(f"l{tag}", str(i))], [])

    return {
        "ping": _micros(lambda _: store.ping(), n),
        "hit": _micros(lambda i: store.hit(item, f"{tag}{i % KEYS}"), n),
        "reserve": _micros(lambda _: store.reserve(f"b{tag}", 1, 10**15, 60), n),
        "lease+release": _micros(lease, n),
        "take": _micros(
            lambda i: store.take(
                [(item.key_for(f"{tag}{i % KEYS}"), 1000, 60)],
                [],
                [(f"b{tag}", 1, 10**15, 60)],
            ),
            n,
        ),
        "admit+settle": _micros(
            lambda i: engine.settle(engine.admit(tokens[i % KEYS], POLICY, Estimate(5, stream=True)), 3), n
        ),
    }


def _admit_loop(kind: str, where: str, n: int, queue) -> None:
    engine = Limits(_make(kind, where))
    tokens = [Subjects(project="bench", token=f"{uuid.uuid4().hex}{k}") for k in range(KEYS)]
    start = time.perf_counter()
    for i in range(n):
        engine.settle(engine.admit(tokens[i % KEYS], POLICY, Estimate(5, stream=True)), 3)
    queue.put(time.perf_counter() - start)


def parallel(kind: str, where: str, n: int, processes: int) -> float:
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    workers = [ctx.Process(target=_admit_loop, args=(kind, where, n, queue)) for _ in range(processes)]
    for worker in workers:
        worker.start()
    elapsed = max(queue.get(timeout=300) for _ in workers)
    for worker in workers:
        worker.join(timeout=30)
    return n * processes / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--processes", type=int, default=2)
    args = parser.parse_args()
    n = max(100, min(args.n, 50_000))
    with tempfile.TemporaryDirectory() as disk, tempfile.TemporaryDirectory(dir="/dev/shm") as shm:
        server = None if os.environ.get("JETPERO_REDIS_URL") else start_redis(Path(disk))
        try:
            stores = {
                "embedded (disk)": ("embedded", str(Path(disk) / "counters.sqlite3")),
                "embedded (/dev/shm)": ("embedded", str(Path(shm) / "counters.sqlite3")),
                "redis (loopback)": ("redis", os.environ.get("JETPERO_REDIS_URL") or server.url),
            }
            print(f"µs per call, median of {3 * n} calls (one process, one thread); admits/s: P processes at once")
            print(
                f"{'store':22}{'ping':>9}{'hit':>9}{'reserve':>9}{'lease+release':>15}{'take':>9}{'admit+settle':>14}"
                f"{'admits/s x' + str(args.processes):>16}"
            )
            for name, (kind, where) in stores.items():
                figures = measure(_make(kind, where), n)
                rate = parallel(kind, where, n, args.processes) if args.processes > 1 else 0.0
                print(
                    f"{name:22}"
                    + "".join(
                        f"{figures[k]:>{w}.1f}"
                        for k, w in (
                            ("ping", 9),
                            ("hit", 9),
                            ("reserve", 9),
                            ("lease+release", 15),
                            ("take", 9),
                            ("admit+settle", 14),
                        )
                    )
                    + f"{rate:>16.0f}"
                )
        finally:
            if server is not None:
                server.stop()


if __name__ == "__main__":
    main()
