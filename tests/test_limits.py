"""The limits engine over both counter stores (embedded SQLite and a real Redis): admit, settle, refusals."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from decimal import Decimal

import openai
import pytest
from flask import Flask, Response
from limits import RateLimitItemPerMinute

from app.rules.policy import Estimate, LimitSet, Policy, Price, Subjects
from app.services.limits import Limits, refusal_response
from app.store.counters import CounterStoreUnavailable
from app.store.redis_counters import RedisCounters
from app.store.sqlite_counters import SQLiteCounters
from tests.helpers import subjects
from tests.servers import LiveServer


def token_policy(**limits) -> Policy:
    return Policy(token=LimitSet(**limits))


def test_requests_per_minute_refuse_with_retry_after_and_ratelimit_fields(store):
    engine, who = Limits(store), subjects()
    results = [engine.admit(who, token_policy(requests_per_minute=3), Estimate()) for _ in range(4)]
    assert [r.admitted for r in results] == [True, True, True, False]
    refusal = results[-1].refusal
    assert refusal.status == 429 and refusal.type == "rate_limit_exceeded" and refusal.code == "requests_per_minute"
    assert 1 <= refusal.retry_after <= 60
    assert refusal.policy == '"token-requests-per-minute";q=3;w=60'
    assert refusal.ratelimit == f'"token-requests-per-minute";r=0;t={refusal.retry_after}'
    other = subjects(project=who.project)  # another token of the same project has its own window
    assert engine.admit(other, token_policy(requests_per_minute=3), Estimate()).admitted


def test_a_refused_check_gives_back_what_earlier_checks_took(store):
    engine, who = Limits(store), subjects(user="alice")
    policy = Policy(token=LimitSet(requests_per_minute=4, concurrent_streams=5), user=LimitSet(tokens_per_day=100))
    first = engine.admit(who, policy, Estimate(tokens=80, stream=True))
    assert first.admitted
    refused = engine.admit(who, policy, Estimate(tokens=80, stream=True))  # the user's budget refuses it
    assert refused.refusal.type == "insufficient_quota" and refused.refusal.code == "tokens_per_day"
    bob = Subjects(project=who.project, token=who.token, user="bob")
    # the refused request holds neither a window entry nor a lease: 3 more fit in the token's window of 4
    assert [engine.admit(bob, policy, Estimate(tokens=1, stream=True)).admitted for _ in range(4)] == [
        True,
        True,
        True,
        False,
    ]
    assert engine.store.window(RateLimitItemPerMinute(4), f"rate:token:{_digest(who)}").remaining == 0


def _digest(who: Subjects) -> str:
    return hashlib.blake2b(f"{who.project}\0{who.token}".encode(), digest_size=16).hexdigest()


def test_budget_reserves_then_settles_to_the_real_count(store):
    engine, who = Limits(store), subjects()
    policy = token_policy(tokens_per_day=100, tokens_per_month=1000)
    first = engine.admit(who, policy, Estimate(tokens=60))
    assert first.admitted and [r[2] for r in first.reservations] == [60, 60]
    second = engine.admit(who, policy, Estimate(tokens=60))
    assert not second.admitted and "too little left" in second.refusal.message
    assert engine.settle(first, actual_tokens=10)
    key = first.reservations[0][0]
    assert store.adjust(key, 0, 60) == 10  # the day's counter holds the real count
    third = engine.admit(who, policy, Estimate(tokens=60))
    assert third.admitted
    assert engine.settle(third, actual_tokens=90)  # more than reserved: counted all the same
    assert store.adjust(key, 0, 60) == 100
    used_up = engine.admit(who, policy, Estimate(tokens=0))
    assert used_up.refusal.code == "tokens_per_day" and "is used up" in used_up.refusal.message
    assert engine.settle(third, actual_tokens=5) and store.adjust(key, 0, 60) == 100  # settled once only


def test_cost_budget_uses_the_models_price(store):
    engine, who = Limits(store), subjects()
    price = Price(input_per_1k=Decimal("0.5"), output_per_1k=Decimal("1.5"))
    estimate = Estimate.of(max_tokens=1000, default_tokens=256, body_bytes=1000, price=price, stream=False)
    assert estimate.tokens == 2000 and estimate.cost == Decimal("2")  # 1000 prompt (<= 1 per byte), 1000 completion
    assert Estimate.of(None, 256, 4001, None, True, bytes_per_token=4) == Estimate(tokens=1001 + 256, stream=True)
    policy = token_policy(cost_per_month=Decimal("3"))
    first = engine.admit(who, policy, estimate)
    assert first.admitted and not engine.admit(who, policy, estimate).admitted
    engine.settle(first, actual_tokens=300, cost=price.cost(200, 100))  # 0.25
    assert engine.admit(who, policy, estimate).admitted  # 0.25 + 2 <= 3


def test_stream_leases_are_released_on_settle_and_lapse_when_a_worker_dies(store):
    engine, who = Limits(store, lease_ttl=0.6), subjects()
    policy = token_policy(concurrent_streams=2)
    a, b = (engine.admit(who, policy, Estimate(stream=True)) for _ in range(2))
    third = engine.admit(who, policy, Estimate(stream=True))
    assert a.admitted and b.admitted and third.refusal.code == "concurrent_streams"
    assert third.refusal.policy == '"token-concurrent-streams";q=2;qu="concurrent-requests"'
    assert engine.admit(who, policy, Estimate(stream=False)).admitted  # a non-streamed call takes no lease
    engine.settle(a, actual_tokens=0)
    assert engine.admit(who, policy, Estimate(stream=True)).admitted  # a's lease was given back
    assert not engine.admit(who, policy, Estimate(stream=True)).admitted
    time.sleep(0.7)  # b and the last one are never settled: their worker "died"
    assert engine.admit(who, policy, Estimate(stream=True)).admitted


def test_token_limits_over_project_defaults():
    project = LimitSet(requests_per_minute=60, tokens_per_day=1000)
    token = LimitSet(tokens_per_day=50)
    assert Policy.resolve(project, token).token == LimitSet(requests_per_minute=60, tokens_per_day=50)
    for bad in (0, -1, True):
        with pytest.raises(ValueError, match="requests_per_second must be greater than 0"):
            LimitSet(requests_per_second=bad)


def test_unlimited_callers_never_touch_the_store():
    dead = Limits(RedisCounters("redis://127.0.0.1:1/0"))  # nothing listens there
    admission = dead.admit(subjects(user="u", ip="203.0.113.9"), Policy(), Estimate(tokens=10, stream=True))
    assert admission.admitted and not admission.degraded and not admission.reservations
    assert dead.settle(admission, actual_tokens=10)
    no_user = Policy(user=LimitSet(requests_per_second=1))  # a per-user limit does not apply without a user
    assert dead.admit(subjects(), no_user, Estimate()).admitted


def test_refusal_in_openais_error_shape_names_no_one_else(store):
    engine, who = Limits(store), subjects(user="victim-user@example.com", ip="198.51.100.7")
    policy = Policy(ip=LimitSet(requests_per_day=1))
    assert engine.admit(who, policy, Estimate()).admitted
    status, headers, body = refusal_response(engine.admit(who, policy, Estimate()).refusal)
    assert status == 429 and headers["Content-Type"] == "application/json"
    assert int(headers["Retry-After"]) >= 1 and headers["RateLimit-Policy"].startswith('"ip-requests-per-day";q=1;')
    error = json.loads(body)["error"]
    assert error["type"] == "rate_limit_exceeded" and error["code"] == "requests_per_day"
    assert "this client address" in error["message"]
    for secret in (who.project, who.token, who.user, who.ip):
        assert secret not in body.decode() and all(secret not in value for value in headers.values())


def test_redis_down_raises_one_error_and_the_configured_behaviour_applies(disposable_redis):
    store = RedisCounters(disposable_redis.url)
    who, policy = subjects(), token_policy(requests_per_minute=100, tokens_per_day=1000, concurrent_streams=5)
    assert Limits(store).admit(who, policy, Estimate(tokens=10, stream=True)).admitted
    disposable_redis.stop()
    for call in (
        lambda: store.hit(RateLimitItemPerMinute(5), "k"),
        lambda: store.reserve("k", 1, 10, 60),
        lambda: store.acquire("k", "lease", 1, 60),
        store.ping,
    ):
        with pytest.raises(CounterStoreUnavailable, match="redis counter store is unavailable"):
            call()
    refused = Limits(store, on_store_down="refuse").admit(who, policy, Estimate(tokens=10))
    status, headers, body = refusal_response(refused.refusal)
    assert status == 503 and headers["Retry-After"] == "5" and "RateLimit" not in headers
    assert json.loads(body)["error"]["code"] == "limits_unavailable"
    allowed = Limits(store, on_store_down="allow").admit(who, policy, Estimate(tokens=10))
    assert allowed.admitted and allowed.degraded
    assert Limits(store).admit(who, Policy(), Estimate()).admitted  # unlimited: unaffected


def test_embedded_store_down_raises_the_same_error(tmp_path):
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    store = SQLiteCounters(str(blocker / "counters.sqlite3"))
    with pytest.raises(CounterStoreUnavailable, match="embedded counter store is unavailable"):
        store.reserve("k", 1, 10, 60)
    refused = Limits(store).admit(subjects(), token_policy(requests_per_second=1), Estimate())
    assert refused.refusal.status == 503


def test_the_openai_sdk_honours_retry_after_then_raises_rate_limit_error(store):
    engine, who, seen = Limits(store), subjects(), []
    web = Flask(__name__)

    @web.post("/v1/chat/completions")
    def chat():  # a stand-in for the proxy's admit phase: one call per minute
        seen.append(time.monotonic())
        admission = engine.admit(who, token_policy(requests_per_minute=1), Estimate())
        if admission.admitted:
            return {"id": "x", "object": "chat.completion", "created": 0, "model": "m", "choices": []}
        status, headers, body = refusal_response(admission.refusal)
        headers["Retry-After"] = "1"  # the real value is up to 60 s: shortened so the SDK's wait stays short
        return Response(body, status, headers)

    server = LiveServer(web)
    try:
        client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="sk-fake-limits-test", max_retries=1)
        client.chat.completions.create(model="m", messages=[])
        with pytest.raises(openai.RateLimitError) as raised:
            client.chat.completions.create(model="m", messages=[])
    finally:
        server.stop()
    assert raised.value.code == "requests_per_minute" and raised.value.type == "rate_limit_exceeded"
    assert len(seen) == 3 and seen[2] - seen[1] >= 0.9  # retried once, after Retry-After


def test_embedded_store_stuck_behind_a_held_lock_is_unavailable_then_recovers(tmp_path):
    path = str(tmp_path / "counters.sqlite3")
    store = SQLiteCounters(path, busy_timeout=0.2)
    assert store.reserve("k", 1, 10, 60) == (True, 1)
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another worker stuck inside a transaction
    try:
        started = time.monotonic()
        with pytest.raises(CounterStoreUnavailable, match="embedded counter store is unavailable: OperationalError"):
            store.reserve("k", 1, 10, 60)
        assert time.monotonic() - started < 2
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert store.reserve("k", 1, 10, 60) == (True, 2)  # nothing half-written, and the store is used again
