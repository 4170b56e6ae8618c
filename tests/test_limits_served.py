"""Limits as served: exact across 2 app instances x 2 gunicorn workers sharing one counter store
(the embedded SQLite file of one node, or Redis), and the official openai SDK running into them.

100 concurrent requests at a limit that admits 10 -> the recording upstream saw at most 10. The
budget round goes to a slow upstream route, so every reservation is still held when the last
request is admitted (no settlement frees budget mid-round).
"""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import openai
import pytest
import requests

from app.services import audit
from tests.helpers import FAKE_KEY, Project, bearer, issue_token, put_provider
from tests.servers import Gunicorn
from tests.upstream import FakeUpstream

CONCURRENT = 100
BODY = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 50}


@pytest.fixture(autouse=True)
def trail(app):
    with audit.bound(app.extensions["jetpero.db"]):
        yield


@pytest.fixture
def proj(project) -> Project:
    return Project(*project.split("/"))


def set_policy(api, proj: Project, token: dict, **body) -> None:
    response = api.put(f"{proj.path}/tokens/{token['id']}/policy", json=body)
    assert response.status_code == 200, response.json


@pytest.fixture(params=["embedded", "redis"])
def nodes(request, bao, approle_file, tmp_path):
    """Two app instances of 2 gevent workers each, sharing the counter store."""
    store = (
        {"JETPERO_COUNTERS_PATH": str(tmp_path / "counters.sqlite3")}
        if request.param == "embedded"
        else {"JETPERO_REDIS_URL": request.getfixturevalue("redis_url")}
    )
    env = {
        "VAULT_ADDR": bao.addr,
        "VAULT_APPROLE_FILE": approle_file,
        "VAULT_TIMEOUT": "5",
        "JETPERO_ALLOW_PRIVATE_UPSTREAMS": "true",
        "JETPERO_SYNC_INTERVAL": "0.5",
        "JETPERO_LOG_LEVEL": "WARNING",
        "JETPERO_DATABASE_URL": f"sqlite:///{tmp_path / 'jetpero.db'}",
        **store,
    }
    servers = []
    try:
        for n in range(2):
            servers.append(Gunicorn(env, tmp_path / f"gunicorn-{n}.log", workers=2))
        yield servers
    finally:
        for server in servers:
            server.stop()


def fire(servers, token: str, path: str, body: bytes) -> list[int]:
    """CONCURRENT requests at once (a barrier lines them up), alternating between the servers."""
    barrier = threading.Barrier(CONCURRENT)

    def one(i: int) -> int:
        session = requests.Session()
        url = f"{servers[i % len(servers)].url}/proxy/openai/{path}"
        headers = {**bearer(token), "Content-Type": "application/json"}
        barrier.wait(timeout=30)
        return session.post(url, data=body, headers=headers, timeout=60).status_code

    with ThreadPoolExecutor(CONCURRENT) as pool:
        return list(pool.map(one, range(CONCURRENT)))


def test_a_budget_that_admits_ten_admits_ten_across_nodes(nodes, api, proj, provider, upstream):
    token = issue_token(api, proj)
    body = json.dumps(BODY).encode()
    set_policy(api, proj, token, limits={"tokens_per_day": 10 * (len(body) + BODY["max_tokens"])})
    statuses = fire(nodes, token["token"], "v1/slow?seconds=2", body)
    assert set(statuses) <= {200, 429}, statuses
    assert len(upstream.requests) == statuses.count(200) <= 10
    assert statuses.count(200) == 10  # exact, too: nothing refused that fit


def test_a_rate_limit_of_ten_admits_ten_across_nodes(nodes, api, proj, provider, upstream):
    token = issue_token(api, proj)
    set_policy(api, proj, token, limits={"requests_per_minute": 10})
    statuses = fire(nodes, token["token"], "v1/chat/completions", json.dumps(BODY).encode())
    assert set(statuses) <= {200, 429}, statuses
    assert len(upstream.requests) == statuses.count(200) == 10


def _sdk(live, token: str, retries: int) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{live.url}/proxy/openai/v1", api_key=token, max_retries=retries, timeout=20)


def test_the_openai_sdk_backs_off_as_told_then_raises(live, api, proj):
    with FakeUpstream(event_delay=0.8) as slow:  # a stream of 5 events over ~4 s holds the one lease
        put_provider(api, proj, "openai", template="openai", api_key=FAKE_KEY, base_url=slow.url)
        token = issue_token(api, proj)
        set_policy(api, proj, token, limits={"concurrent_streams": 1})
        held = requests.post(
            f"{live.url}/proxy/openai/v1/chat/completions",
            json={**BODY, "stream": True},
            headers=bearer(token["token"]),
            stream=True,
            timeout=20,
        )
        assert held.status_code == 200
        started = time.monotonic()
        with pytest.raises(openai.RateLimitError) as raised:
            _sdk(live, token["token"], retries=2).chat.completions.create(
                model="gpt-4o-mini", messages=BODY["messages"], stream=True
            )
        waited = time.monotonic() - started
        held.content  # noqa: B018 - read the held stream to its end
        held.close()
        assert raised.value.response.headers["Retry-After"] == "1"
        assert raised.value.code == "concurrent_streams"
        assert waited >= 2.0, waited  # two retries, each after the 1 s Retry-After
        assert len(slow.requests) == 1


def test_the_openai_sdk_does_not_retry_a_long_retry_after(live, api, proj, provider, upstream):
    token = issue_token(api, proj)
    set_policy(api, proj, token, limits={"requests_per_day": 1})
    client = _sdk(live, token["token"], retries=3)
    client.chat.completions.create(model="gpt-4o-mini", messages=BODY["messages"])
    started = time.monotonic()
    with pytest.raises(openai.RateLimitError) as raised:
        client.chat.completions.create(model="gpt-4o-mini", messages=BODY["messages"])
    assert int(raised.value.response.headers["Retry-After"]) > 60  # the window ends in hours
    assert time.monotonic() - started < 2  # told to wait longer than it would: it raises at once
    assert raised.value.type == "rate_limit_exceeded"
    assert len(upstream.requests) == 1
