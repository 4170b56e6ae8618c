"""The per-worker caches' fills: one load per key however many callers miss it at once, and
nothing stored that an eviction during the load made stale. Real threads; the last test runs
proxied calls against the real OpenBao."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from app import access
from app.proxy import phases
from app.state import Cache
from tests.helpers import bearer
from tests.servers import LiveServer


def _burst(callers: int, call):
    """`call()` from `callers` threads released at once; their results (or exceptions)."""
    start = threading.Barrier(callers)

    def one():
        start.wait()
        try:
            return call()
        except Exception as exc:  # noqa: BLE001 - returned for the test to inspect
            return exc

    with ThreadPoolExecutor(callers) as pool:
        return list(pool.map(lambda _: one(), range(callers)))


def test_callers_that_miss_at_once_share_one_load():
    cache, loads = Cache("test"), []

    def load():
        loads.append(1)
        time.sleep(0.2)
        return {"value": len(loads)}

    results = _burst(20, lambda: cache.lookup("k") or cache.fill("k", load))
    assert len(loads) == 1
    assert all(result is results[0] for result in results)
    assert cache.lookup("k") is results[0]  # stored for the next caller


def test_callers_that_miss_at_once_share_the_load_failing():
    cache, loads = Cache("test"), []

    def load():
        loads.append(1)
        time.sleep(0.2)
        raise LookupError("not there")

    results = _burst(10, lambda: cache.fill("k", load))
    assert len(loads) == 1
    assert all(isinstance(result, LookupError) for result in results)
    assert cache.lookup("k") is None
    assert cache.fill("k", lambda: "second try") == "second try"  # a failure is not remembered


def test_a_value_loaded_across_an_eviction_is_not_stored():
    """As when a revocation is applied while a token's record is being read: the read may predate
    the revocation, so its value serves the call that asked but is not kept."""
    cache = Cache("test")
    cache.fill("other", lambda: "x")
    reading, evicted = threading.Event(), threading.Event()

    def load():
        reading.set()
        assert evicted.wait(5)
        return "read before the revocation"

    leader = threading.Thread(target=lambda: cache.fill("k", load))
    leader.start()
    assert reading.wait(5)
    cache.evict(lambda key, _: key == "other")  # the poller applies a change meanwhile
    # A caller that misses after the eviction does not wait for the stale load: it loads anew
    assert cache.fill("k", lambda: "read after") == "read after"
    evicted.set()
    leader.join(5)
    assert cache.lookup("k") == "read after"


@pytest.mark.parametrize("evict", [lambda c: c.pop("k"), lambda c: c.clear(), lambda c: c.evict(lambda k, v: False)])
def test_every_eviction_counts(evict):
    cache = Cache("test")
    reading, go = threading.Event(), threading.Event()

    def load():
        reading.set()
        go.wait(5)
        return "stale"

    leader = threading.Thread(target=lambda: cache.fill("k", load))
    leader.start()
    assert reading.wait(5)
    evict(cache)
    go.set()
    leader.join(5)
    assert cache.lookup("k") is None


def test_a_burst_of_proxied_calls_on_a_cold_worker_reads_vault_once(
    make_app, provider, project_token, upstream, monkeypatch
):
    """Twenty calls at once with a token and provider this worker has not seen: one token
    verification and one provider-key read from Vault, not twenty."""
    counts = {"tokens": 0, "keys": 0}
    verify, load_key = access._verify_project_token, phases.provider_keys.load_with_key

    def counted_verify(*args):
        counts["tokens"] += 1
        return verify(*args)

    def counted_load(*args):
        counts["keys"] += 1
        time.sleep(0.1)  # a slower Vault: the calls overlap for sure
        return load_key(*args)

    monkeypatch.setattr(access, "_verify_project_token", counted_verify)
    monkeypatch.setattr(phases.provider_keys, "load_with_key", counted_load)
    server = LiveServer(make_app())
    try:
        url = f"{server.url}/proxy/openai/v1/models"
        statuses = _burst(20, lambda: requests.get(url, headers=bearer(project_token), timeout=30).status_code)
    finally:
        server.stop()
    assert statuses == [200] * 20
    assert counts == {"tokens": 1, "keys": 1}
