"""A limited admit is one store round trip (`CounterStore.take`), all or nothing, on both stores.

Redis: a MONITOR connection records what the store's own connection sends (a script's inner
commands are told apart as `lua`); embedded: SQLite's trace callback on the store's connection
records its statements. Both against the real store.
"""

from __future__ import annotations

import math
import sqlite3
import subprocess
import sys
import time
import uuid

import pytest
import redis
from limits import RateLimitItemPerDay, RateLimitItemPerMinute, RateLimitItemPerSecond

from app.rules.policy import Estimate, LimitSet, Policy
from app.services.limits import Limits, _key
from app.store.counters import CounterStoreUnavailable
from app.store.redis_counters import RedisCounters
from app.store.sqlite_counters import SQLiteCounters
from tests.helpers import subjects

EVERYTHING = Policy(  # every kind of check, at every level: 2 + 1 + 1 windows, 3 leases, 3 budgets
    ip=LimitSet(requests_per_second=50, requests_per_day=500, concurrent_streams=5, tokens_per_day=1000),
    user=LimitSet(requests_per_minute=40, concurrent_streams=4, tokens_per_month=900),
    token=LimitSet(requests_per_minute=30, concurrent_streams=3, tokens_per_day=800),
)


def sent_by(store, action) -> list[str]:
    """The commands (Redis) or transactions (SQLite) the store sends while `action` runs."""
    if isinstance(store, SQLiteCounters):
        statements: list[str] = []
        conn = store.storage._connect()
        conn.set_trace_callback(statements.append)
        try:
            action()
        finally:
            conn.set_trace_callback(None)
        return [s for s in statements if s.startswith(("BEGIN", "COMMIT", "ROLLBACK"))]
    own = "{}:{}".format(*store._lean.idle[-1]._sock.getsockname()[:2])  # the connection the next call reuses
    watcher = redis.Redis.from_url(_url(store))
    marker = f"end-{uuid.uuid4().hex}"
    commands = []
    with watcher.monitor() as monitor:
        action()
        redis.Redis.from_url(_url(store)).echo(marker)
        for event in monitor.listen():
            if marker in event["command"]:
                break
            if f"{event['client_address']}:{event['client_port']}" == own:
                commands.append(event["command"].split()[0].upper())
    watcher.close()
    return commands


def _url(store: RedisCounters) -> str:
    kw = store.client.connection_pool.connection_kwargs
    return f"redis://{kw['host']}:{kw['port']}/{kw.get('db', 0)}"


def test_a_limited_admit_is_one_round_trip_and_settle_one(store):
    engine, who = Limits(store), subjects(user="alice", ip="198.51.100.3")
    engine.admit(subjects(), EVERYTHING, Estimate())  # warm: connection, schema, script cache
    taken = {}
    admit_sent = sent_by(store, lambda: taken.setdefault("a", engine.admit(who, EVERYTHING, Estimate(7, stream=True))))
    admission = taken["a"]
    assert admission.admitted and len(admission.leases) == 3 and len(admission.reservations) == 3
    settle_sent = sent_by(store, lambda: engine.settle(admission, actual_tokens=2))
    if isinstance(store, SQLiteCounters):
        assert admit_sent == ["BEGIN IMMEDIATE", "COMMIT"] and settle_sent == ["BEGIN IMMEDIATE", "COMMIT"]
    else:
        assert admit_sent == ["EVALSHA"]  # windows, leases and budgets: one script
        assert settle_sent == ["ZREM", "ZREM", "ZREM"] + ["INCRBY", "EXPIRE"] * 3  # one pipeline
    # Without a stream lease, settle sends nothing: its corrections ride with the next admit's round trip.
    plain = engine.admit(who, EVERYTHING, Estimate(7))
    assert sent_by(store, lambda: engine.settle(plain, actual_tokens=3)) == []
    carried = sent_by(store, lambda: engine.admit(who, EVERYTHING, Estimate(1)))
    assert carried == (["BEGIN IMMEDIATE", "COMMIT"] if isinstance(store, SQLiteCounters) else ["EVALSHA"])
    for key, _, _, ttl in plain.reservations:  # 7 + 2 + 7 + 1 reserved, the first two corrected to 2 and 3
        assert store.adjust(key, 0, ttl) == 2 + 3 + 1, key
    refused = {}
    tight = Policy(token=LimitSet(tokens_per_day=1))
    refused_sent = sent_by(store, lambda: refused.setdefault("r", engine.admit(who, tight, Estimate(7))))
    assert refused["r"].refusal.code == "tokens_per_day"
    assert len(refused_sent) == (2 if isinstance(store, SQLiteCounters) else 1)  # no undo, no second read


def test_a_refusal_by_a_later_check_leaves_every_earlier_window_lease_and_budget_untouched(store):
    engine, who = Limits(store), subjects(user="alice", ip="198.51.100.4")
    first = engine.admit(who, EVERYTHING, Estimate(100, stream=True))
    assert first.admitted
    # the token's daily budget (the last check) has 700 left: 701 is refused after every other check passed
    refused = engine.admit(who, EVERYTHING, Estimate(701, stream=True))
    assert refused.refusal.code == "tokens_per_day" and "ip" not in refused.refusal.policy
    assert refused.refusal.policy.startswith('"token-tokens-per-day"') and not refused.leases
    windows = {
        "ip": [RateLimitItemPerSecond(50), RateLimitItemPerDay(500)],
        "user": [RateLimitItemPerMinute(40)],
        "token": [RateLimitItemPerMinute(30)],
    }
    for level, items in windows.items():  # read the way the limits library reads them: one entry each
        for item in items:
            assert store.window(item, _key("rate", who, level)).remaining == item.amount - 1, (level, item)
    for key, _, amount, ttl in first.reservations:  # the first admit's 100 each, no more
        assert store.adjust(key, 0, ttl) == amount == 100
    # one lease each is held: the token's limit of 3 admits exactly 2 more streams
    more = [engine.admit(who, EVERYTHING, Estimate(1, stream=True)) for _ in range(3)]
    assert [m.admitted for m in more] == [True, True, False] and more[2].refusal.code == "concurrent_streams"
    assert more[2].refusal.policy == '"token-concurrent-streams";q=3;qu="concurrent-requests"'


def test_a_window_refusal_leaves_the_later_levels_and_budgets_untouched(store):
    engine, who = Limits(store), subjects(ip="198.51.100.5")
    policy = Policy(ip=LimitSet(requests_per_minute=2), token=LimitSet(requests_per_minute=10, tokens_per_day=50))
    assert [engine.admit(who, policy, Estimate(5)).admitted for _ in range(3)] == [True, True, False]
    assert store.window(RateLimitItemPerMinute(10), _key("rate", who, "token")).remaining == 8
    day_key = engine.admit(who, Policy(token=LimitSet(tokens_per_day=50)), Estimate(0)).reservations[0][0]
    assert store.adjust(day_key, 0, 60) == 10  # two reservations of 5, none for the refused third


def test_take_and_the_limits_library_share_one_moving_window(store):
    engine, who = Limits(store), subjects()
    item, key = RateLimitItemPerMinute(3), _key("rate", who, "token")
    assert store.hit(item, key) and store.hit(item, key)  # the library's own hits
    policy = Policy(token=LimitSet(requests_per_minute=3))
    assert engine.admit(who, policy, Estimate()).admitted  # the third entry
    assert not store.hit(item, key)  # the library sees the window full
    refusal = engine.admit(who, policy, Estimate()).refusal
    reset, remaining = store.window(item, key)
    assert remaining == 0 and refusal.ratelimit == f'"token-requests-per-minute";r=0;t={refusal.retry_after}'
    # from the oldest entry, as the library's reset (a second may tick between the two reads)
    assert refusal.retry_after - max(1, math.ceil(reset - time.time())) in (0, 1)


def test_closed_connections_are_replaced_a_flushed_script_resent_and_a_dead_server_is_unavailable(disposable_redis):
    store, who = RedisCounters(disposable_redis.url), subjects()
    engine, policy = Limits(store), Policy(token=LimitSet(requests_per_minute=10, tokens_per_day=100))
    assert engine.settle(engine.admit(who, policy, Estimate(5)), 1)
    admin = redis.Redis.from_url(disposable_redis.url)
    admin.script_flush()  # as after a restart: EVALSHA answers NOSCRIPT, the script is sent once
    assert admin.client_kill_filter(_type="normal", skipme=True) >= 1  # every idle connection of the store's
    admin.close()
    second = engine.admit(who, policy, Estimate(5))  # on a new connection, taken once
    assert second.admitted and engine.settle(second, 1)
    assert store.adjust(second.reservations[0][0], 0, 60) == 2
    assert store.window(RateLimitItemPerMinute(10), _key("rate", who, "token")).remaining == 8
    disposable_redis.stop()
    refused = engine.admit(who, policy, Estimate(5))
    assert refused.refusal.status == 503 and refused.refusal.code == "limits_unavailable"
    assert not Limits(store).settle(second.__class__(reservations=second.reservations, leases=[("k", "l")]), 3)
    assert Limits(store).settle(second.__class__(reservations=second.reservations), 3)  # deferred: sent later
    with pytest.raises(CounterStoreUnavailable):
        store.flush()
    key, _, reserved, ttl = second.reservations[0]
    assert store.corrections.claim() == [(key, 3 - reserved, ttl)]  # kept for the store's return, not lost


def test_a_correction_with_no_take_after_it_is_sent_within_the_settle_delay(store):
    """Another process (a second store on the same file or server) sees a deferred correction
    soon after the settle, though no take of the settling process carried it."""
    engine, who = Limits(store), subjects()
    admission = engine.admit(who, Policy(token=LimitSet(tokens_per_day=100)), Estimate(40))
    key, _, _, ttl = admission.reservations[0]
    other = SQLiteCounters(store.storage.path) if isinstance(store, SQLiteCounters) else RedisCounters(_url(store))
    assert engine.settle(admission, actual_tokens=15)
    assert other.adjust(key, 0, ttl) == 40  # not sent yet
    ends = time.monotonic() + 5
    while other.adjust(key, 0, ttl) != 15 and time.monotonic() < ends:
        time.sleep(0.01)
    assert other.adjust(key, 0, ttl) == 15


_HELD_LOCK = """
from gevent import monkey; monkey.patch_all()
import sqlite3, sys, time
import gevent
from app.store.sqlite_counters import SQLiteCounters

def trial(path, busy_timeout):
    store = SQLiteCounters(path, busy_timeout=busy_timeout)
    store.ping()  # connected, schema made
    holder = sqlite3.connect(path, isolation_level=None)  # another connection: SQLite locks it out too
    holder.execute("BEGIN IMMEDIATE")
    ticks = []

    def tick():  # the worker's other requests: each needs the loop for a moment every millisecond
        while len(ticks) < 1000:
            ticks.append(time.monotonic())
            gevent.sleep(0.001)

    def release():
        gevent.sleep(0.3)
        holder.execute("COMMIT")

    def take():
        started = time.monotonic()
        try:
            answer = store.take([("held-lock", 5, 60)], [], [])
        except Exception as exc:
            return type(exc).__name__, time.monotonic() - started
        return repr(answer), time.monotonic() - started

    ticker, releaser, taker = gevent.spawn(tick), gevent.spawn(release), gevent.spawn(take)
    taker.join()
    releaser.join()
    ticker.kill()
    waited_ticks = sum(1 for t in ticks if t < ticks[0] + 0.29)
    print(taker.value[0], round(taker.value[1], 2), waited_ticks)

for n, busy_timeout in enumerate(sys.argv[2:]):
    trial(f"{sys.argv[1]}-{n}", float(busy_timeout))
"""


def test_a_write_lock_held_elsewhere_is_waited_for_without_stopping_the_worker(tmp_path):
    """Under gevent, while another connection (a worker process) holds the embedded store's write
    lock, a call waits for it without blocking the worker's other greenlets, takes once the lock is
    released, and after `busy_timeout` is unavailable instead of waiting on."""
    result = subprocess.run(
        [sys.executable, "-c", _HELD_LOCK, str(tmp_path / "counters.sqlite"), "5.0", "0.1"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    (answer, waited, ticks), (late, gave_up_after, _) = (line.split() for line in result.stdout.splitlines())
    assert answer == "None" and 0.28 <= float(waited) < 2, (answer, waited)  # taken once released
    assert int(ticks) >= 100, ticks  # the loop kept running while it waited (SQLite's own sleep stops it)
    assert late == "CounterStoreUnavailable" and float(gave_up_after) < 0.28, (late, gave_up_after)


def _steps(conn, action) -> int:
    """SQLite virtual-machine steps (in 100s) that `action` costs on `conn`: a count, not a time."""
    steps = [0]

    def tick() -> int:
        steps[0] += 1
        return 0

    conn.set_progress_handler(tick, 100)
    try:
        action()
    finally:
        conn.set_progress_handler(None, 100)
    return steps[0]


def test_an_embedded_window_check_reads_its_size_not_its_entries(tmp_path):
    """A full window of 20,000 entries costs a take no more than one of 20 (the size is kept
    beside the entries), and the kept size stays the entries' count through takes, the
    library's own hits, expiry, a refusal and the sweep."""
    store = SQLiteCounters(str(tmp_path / "counters.sqlite"))
    conn = store.storage._connect()
    day = RateLimitItemPerDay(100_000)
    small, big = day.key_for("small"), day.key_for("big")
    for key, n in ((small, 20), (big, 20_000)):
        store.take([(key, 100_000, 86400)], [], [])  # the row of its size
        with store.storage.transaction() as (tx, now):
            store.storage.add_entries(tx, [(key, now, now + 86400)] * (n - 1), sizes := {})
            store.storage.resize(tx, sizes)
    costs = {key: _steps(conn, lambda k=key: store.take([(k, 100_000, 86400)], [], [])) for key in (small, big)}
    assert costs[big] <= costs[small] + 2, costs  # with COUNT(*) over the entries: 1,000 times as many

    def sizes_match() -> None:
        counted = dict(conn.execute("SELECT key, COUNT(*) FROM entries GROUP BY key").fetchall())
        kept = dict(conn.execute("SELECT key, size FROM window_sizes WHERE size > 0").fetchall())
        assert kept == counted

    sizes_match()
    second, key = RateLimitItemPerSecond(3), "rate:token:churn"
    window = second.key_for(key)
    assert [store.take([(window, 3, 1)], [], []) is None for _ in range(4)] == [True, True, True, False]
    assert store.hit(second, key) is False  # the library's own check reads the same size
    sizes_match()
    time.sleep(1.05)  # the three entries expire: the next take deletes them and counts one
    assert store.hit(second, key) and store.take([(window, 3, 1)], [], []) is None
    assert store.window(second, key).remaining == 1
    sizes_match()
    time.sleep(1.05)
    with store.storage.transaction() as (tx, now):
        store.storage._sweep(tx, now)  # every expired entry, of every window, at once
    sizes_match()
    assert conn.execute("SELECT size FROM window_sizes WHERE key = ?", (window,)).fetchone() is None


def test_an_embedded_file_of_before_gets_its_window_sizes_counted_once(tmp_path):
    path = tmp_path / "counters.sqlite"
    old = sqlite3.connect(path, isolation_level=None)
    old.execute("CREATE TABLE entries (key TEXT NOT NULL, at REAL NOT NULL, expires_at REAL NOT NULL)")
    now = time.time()
    old.executemany("INSERT INTO entries VALUES (?, ?, ?)", [("k", now, now + 60)] * 4)
    old.close()
    store = SQLiteCounters(str(path))
    assert store.take([("k", 5, 60)], [], []) is None  # the fifth of five
    assert store.take([("k", 5, 60)], [], []) == (0, now)  # refused: the four of before were counted


def test_corrections_of_a_take_that_timed_out_are_not_sent_again(disposable_redis):
    """A take whose reply never came may still have run, its corrections with it: they are dropped
    (the reservation stands), never sent twice (which would give the spend back twice)."""
    store, who = RedisCounters(disposable_redis.url), subjects()
    engine, policy = Limits(store), Policy(token=LimitSet(tokens_per_day=1000))
    first = engine.admit(who, policy, Estimate(100))
    key, _, _, ttl = first.reservations[0]
    assert engine.settle(first, actual_tokens=30)  # -70, due with the next take
    admin = redis.Redis.from_url(disposable_redis.url)
    admin.client_pause(1500)  # the next take is held past the store's 0.5 s timeout, then runs
    assert engine.admit(who, policy, Estimate(10)).refusal.code == "limits_unavailable"
    assert store.corrections.claim() == []  # dropped, not put back
    time.sleep(1.2)
    # Whether the held script ran is the server's business (Redis drops a paused command whose
    # client hung up): applied once (100 - 70 + 10) or not at all (the reservation stands).
    after = int(admin.get(f"jetpero:{key}"))
    assert after in (40, 100), after
    store.flush()
    assert int(admin.get(f"jetpero:{key}")) == after  # never a second time
    admin.close()
