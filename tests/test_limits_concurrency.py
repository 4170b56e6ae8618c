"""Exactness under concurrency across processes: 4 processes x 25 threads, 100 admits, 10 fit.

Each process opens its own store (its own SQLite connection or Redis pool), as gunicorn's
workers do; a barrier lines every thread of every process up before each round.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from app.rules.policy import Estimate, LimitSet, Policy, Subjects
from app.services.limits import Limits
from app.store.redis_counters import RedisCounters
from app.store.sqlite_counters import SQLiteCounters

PROCESSES, THREADS = 4, 25
ROUNDS = {  # name: (the limit that admits 10, the estimate of one request)
    "budget": (LimitSet(tokens_per_day=10 * 7), Estimate(tokens=7)),
    "window": (LimitSet(requests_per_minute=10), Estimate()),
    "streams": (LimitSet(concurrent_streams=10), Estimate(stream=True)),
    "all-at-once": (
        LimitSet(requests_per_second=50, concurrent_streams=60, tokens_per_day=30),
        Estimate(3, stream=True),
    ),
}


def _store(kind: str, where: str):
    return SQLiteCounters(where) if kind == "embedded" else RedisCounters(where)


def worker(kind: str, where: str, project: str, barrier, results) -> None:
    engine = Limits(_store(kind, where))
    local = threading.Barrier(THREADS)
    for name, (limits, estimate) in ROUNDS.items():
        who = Subjects(project=project, token=name)

        def fire(_: int, who=who, limits=limits, estimate=estimate) -> bool:
            local.wait(timeout=30)
            return engine.admit(who, Policy(token=limits), estimate).admitted

        barrier.wait(timeout=60)
        with ThreadPoolExecutor(THREADS) as pool:
            results.put((name, sum(pool.map(fire, range(THREADS)))))


@pytest.mark.parametrize("kind", ["embedded", "redis"])
def test_exactly_ten_of_a_hundred_across_four_processes(kind, request, tmp_path):
    where = str(tmp_path / "counters.sqlite3") if kind == "embedded" else request.getfixturevalue("redis_url")
    project = f"org/p-{uuid.uuid4().hex[:8]}"
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(PROCESSES), ctx.Queue()
    processes = [ctx.Process(target=worker, args=(kind, where, project, barrier, results)) for _ in range(PROCESSES)]
    for process in processes:
        process.start()
    try:
        admitted: dict[str, int] = dict.fromkeys(ROUNDS, 0)
        for _ in range(PROCESSES * len(ROUNDS)):
            name, count = results.get(timeout=120)
            admitted[name] += count
    finally:
        for process in processes:
            process.join(timeout=30)
            if process.is_alive():
                process.kill()
    assert admitted == {"budget": 10, "window": 10, "streams": 10, "all-at-once": 10}
    assert all(process.exitcode == 0 for process in processes)
    store = _store(kind, where)
    budget = Limits(store).admit(
        Subjects(project=project, token="budget"), Policy(token=ROUNDS["budget"][0]), Estimate(tokens=1)
    )
    assert (
        budget.refusal.code == "tokens_per_day" and "is used up" in budget.refusal.message
    )  # reserved exactly 70 of 70


def hold_a_stream(kind: str, where: str, project: str, ready) -> None:
    engine = Limits(_store(kind, where), lease_ttl=2.0)
    admission = engine.admit(
        Subjects(project=project, token="t"), Policy(token=LimitSet(concurrent_streams=1)), Estimate(stream=True)
    )
    ready.put(admission.admitted)
    time.sleep(60)  # killed by the test long before


@pytest.mark.parametrize("kind", ["embedded", "redis"])
def test_a_killed_workers_stream_lease_lapses(kind, request, tmp_path):
    where = str(tmp_path / "counters.sqlite3") if kind == "embedded" else request.getfixturevalue("redis_url")
    project, ctx = f"org/p-{uuid.uuid4().hex[:8]}", multiprocessing.get_context("spawn")
    ready = ctx.Queue()
    worker = ctx.Process(target=hold_a_stream, args=(kind, where, project, ready))
    worker.start()
    try:
        assert ready.get(timeout=60) is True
    finally:
        os.kill(worker.pid, signal.SIGKILL)
        worker.join(timeout=10)
    killed_at = time.monotonic()
    engine, who = Limits(_store(kind, where), lease_ttl=2.0), Subjects(project=project, token="t")
    policy = Policy(token=LimitSet(concurrent_streams=1))
    assert not engine.admit(who, policy, Estimate(stream=True)).admitted  # the dead worker's lease still counts
    while not (admitted := engine.admit(who, policy, Estimate(stream=True))).admitted:
        assert time.monotonic() - killed_at < 5, "the dead worker's lease never lapsed"
        time.sleep(0.1)
    assert admitted.leases
