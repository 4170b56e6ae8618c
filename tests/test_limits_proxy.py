"""The limits concern in the proxy: rate limits, budgets, streams, IP allowlists, scopes, store down.

Policies are set through the admin API (the audit trail bound around each test until the admin
request cycle binds it itself); the counter store is the embedded one unless a test says Redis.
"""

from __future__ import annotations

import http.client
import json
import time
from urllib.parse import urlsplit

import pytest

from app.proxy.call import Concerns
from app.proxy.limits import LimitsConcern
from app.proxy.views import CONCERNS
from app.services import audit
from tests.helpers import FAKE_KEY, Project, bearer, issue_token, put_provider

CHAT = "/proxy/openai/v1/chat/completions"
BODY = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 50}


@pytest.fixture(autouse=True)
def trail(app):
    with audit.bound(app.extensions["jetpero.db"]):
        yield


@pytest.fixture
def proj(project) -> Project:
    return Project(*project.split("/"))


def set_policy(api, proj: Project, token: dict | None = None, **body) -> None:
    path = f"{proj.path}/tokens/{token['id']}/policy" if token else f"{proj.path}/policy"
    response = api.put(path, json=body)
    assert response.status_code == 200, response.json


def chat(client, token: dict, body=BODY, *, ip: str = "127.0.0.1", **kwargs):
    """POST a chat completion; a buffered answer is closed, as a server does (which settles the call)."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    response = client.post(
        CHAT,
        data=data,
        headers={**bearer(token["token"]), "Content-Type": "application/json", **kwargs.pop("headers", {})},
        environ_base={"REMOTE_ADDR": ip},
        **kwargs,
    )
    if kwargs.get("buffered", True):
        response.close()
    return response


def openai_error(response, status: int, code: str) -> dict:
    assert response.status_code == status, (response.status_code, response.get_data(as_text=True))
    error = response.get_json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["code"] == code, error
    assert response.headers["Retry-After"].isdigit() and int(response.headers["Retry-After"]) >= 1
    return error


# --------------------------------------------------------------------------- rate limits and budgets


def test_a_rate_limit_refuses_in_openai_shape_with_ratelimit_fields(client, api, proj, provider, upstream):
    limited, free = issue_token(api, proj), issue_token(api, proj)
    set_policy(api, proj, limited, limits={"requests_per_minute": 3})
    assert [chat(client, limited).status_code for _ in range(3)] == [200, 200, 200]
    refused = chat(client, limited)
    error = openai_error(refused, 429, "requests_per_minute")
    assert error["type"] == "rate_limit_exceeded" and "3 requests per minute" in error["message"]
    assert refused.headers["RateLimit-Policy"] == '"token-requests-per-minute";q=3;w=60'
    assert refused.headers["RateLimit"].startswith('"token-requests-per-minute";r=0;t=')
    assert len(upstream.requests) == 3  # the refused one was never forwarded
    assert chat(client, free).status_code == 200  # another token of the project is not limited


def test_project_limits_are_the_default_and_the_ceiling(client, api, proj, provider):
    token = issue_token(api, proj)
    set_policy(api, proj, limits={"requests_per_minute": 2})
    set_policy(api, proj, token, limits={"requests_per_minute": 100})  # looser: the project's holds
    assert [chat(client, token).status_code for _ in range(3)] == [200, 200, 429]
    fresh = issue_token(api, proj)  # a new token gets the project's limit from its first call
    assert [chat(client, fresh).status_code for _ in range(3)] == [200, 200, 429]


class ReportsUsage:
    """Stands in for the usage concern (which runs before limits): the fake upstream's counts."""

    def settle(self, call) -> None:
        if call.status == 200:
            call.notes["usage"] = {
                "model": "gpt-4o-mini",
                "prompt_tokens": 9,
                "completion_tokens": 5,
                "total_tokens": 14,
            }


@pytest.fixture(scope="module")
def metered(make_app, tmp_path_factory):
    """An app whose concerns are a usage reporter then the limits concern, on its own embedded store."""
    built = make_app(JETPERO_COUNTERS_PATH=str(tmp_path_factory.mktemp("counters") / "c.sqlite3"))
    built.extensions[CONCERNS] = Concerns((ReportsUsage(), LimitsConcern(built.extensions["jetpero"].config)))
    return built


def test_a_budget_reserves_then_settles_to_the_real_count(metered, api, proj, provider, upstream):
    client, token = metered.test_client(), issue_token(api, proj)
    reserved = len(json.dumps(BODY).encode()) + BODY["max_tokens"]  # prompt bound + max_tokens
    set_policy(api, proj, token, limits={"tokens_per_day": reserved + 20})
    # Without settlement the second call would not fit (2 x reserved); settled to 14 each, two do.
    assert [chat(client, token).status_code for _ in range(2)] == [200, 200]
    error = openai_error(chat(client, token), 429, "tokens_per_day")
    assert error["type"] == "insufficient_quota" and "too little left" in error["message"]
    assert len(upstream.requests) == 2
    no_cap = {key: value for key, value in BODY.items() if key != "max_tokens"}
    set_policy(api, proj, estimate_tokens=10_000)  # nothing fits a 10,000-token estimate
    assert openai_error(chat(client, token, no_cap), 429, "tokens_per_day")


def test_a_cost_budget_needs_a_price(client, api, proj, provider):
    token = issue_token(api, proj)
    set_policy(api, proj, token, limits={"cost_per_day": "1.00"})
    refused = chat(client, token)
    assert refused.status_code == 403 and "no price for the model 'gpt-4o-mini'" in refused.json["message"]
    prices = {"models": {"gpt-4o*": {"input_per_1k": "1", "output_per_1k": "10"}}}
    assert api.put(f"{proj.path}/providers/openai/prices", json=prices).status_code == 200
    # reserved: ~120 prompt tokens at 1/1K + 50 completion tokens at 10/1K = ~0.62 of the 1.00
    assert chat(client, token).status_code == 200
    costly = {**BODY, "max_tokens": 200}  # 200 completion tokens alone may cost 2.00
    error = openai_error(chat(client, token, costly), 429, "cost_per_day")
    assert error["type"] == "insufficient_quota" and "a cost of 1.00 per day" in error["message"]


def test_concurrent_streams(client, api, proj, provider):
    token = issue_token(api, proj)
    set_policy(api, proj, token, limits={"concurrent_streams": 1})
    streamed = {**BODY, "stream": True}
    held = chat(client, token, streamed, buffered=False)
    assert held.status_code == 200
    assert openai_error(chat(client, token, streamed), 429, "concurrent_streams")
    assert chat(client, token).status_code == 200  # a call that does not stream takes no lease
    held.get_data()
    held.close()  # the stream is over: its lease is given back
    assert chat(client, token, streamed).status_code == 200


def test_a_policy_change_reaches_another_worker_within_the_sync_bound(make_app, client, api, proj, provider):
    other, token = make_app().test_client(), issue_token(api, proj)
    assert chat(other, token).status_code == 200  # cached there as unlimited
    set_policy(api, proj, token, limits={"requests_per_day": 1})
    assert [chat(client, token).status_code for _ in range(2)] == [200, 429]  # this worker: at once
    deadline = time.monotonic() + 5
    while chat(other, token).status_code != 429:
        assert time.monotonic() < deadline, "the other worker never applied the policy"
        time.sleep(0.2)


# --------------------------------------------------------------------------- store down


def test_store_down_refuses_limited_tokens_only(make_app, api, proj, provider, disposable_redis):
    limited, free = issue_token(api, proj), issue_token(api, proj)
    set_policy(api, proj, limited, limits={"requests_per_second": 100})
    client = make_app(JETPERO_REDIS_URL=disposable_redis.url).test_client()
    lenient = make_app(JETPERO_REDIS_URL=disposable_redis.url, JETPERO_LIMITS_ON_STORE_DOWN="allow").test_client()
    assert chat(client, limited).status_code == 200
    disposable_redis.stop()
    error = openai_error(chat(client, limited), 503, "limits_unavailable")
    assert error["type"] == "service_unavailable"
    assert chat(client, free).status_code == 200  # no limit: no store call, unaffected
    assert chat(lenient, limited).status_code == 200  # JETPERO_LIMITS_ON_STORE_DOWN=allow


# --------------------------------------------------------------------------- IP allowlists


def test_ip_allowlists_v4_and_v6(client, api, proj, provider):
    token = issue_token(api, proj)
    set_policy(api, proj, ip_allowlist=["203.0.113.0/24", "2001:db8::/32"])
    assert chat(client, token, ip="203.0.113.7").status_code == 200
    assert chat(client, token, ip="2001:db8::5").status_code == 200
    assert chat(client, token, ip="::ffff:203.0.113.9").status_code == 200  # IPv4-mapped
    for outside in ("198.51.100.1", "2001:db9::1", "127.0.0.1"):
        refused = chat(client, token, ip=outside)
        assert refused.status_code == 403, outside
        assert refused.json["message"] == f"This client address ({outside}) is not in the project's IP allowlist."
    set_policy(api, proj, token, ip_allowlist=["203.0.113.128/25"])  # the token's narrows the project's
    assert chat(client, token, ip="203.0.113.200").status_code == 200
    assert "token's IP allowlist" in chat(client, token, ip="203.0.113.7").json["message"]


def test_a_spoofed_forwarded_for_cannot_pass(make_app, client, api, proj, provider, upstream):
    token = issue_token(api, proj)
    set_policy(api, proj, ip_allowlist=["203.0.113.0/24"])
    spoofed = {"X-Forwarded-For": "203.0.113.7", "X-Real-IP": "203.0.113.7"}
    assert chat(client, token, ip="198.51.100.1", headers=spoofed).status_code == 403  # no trusted proxy
    behind = make_app(JETPERO_TRUSTED_PROXIES="1").test_client()  # one reverse proxy appends the client
    assert chat(behind, token, ip="10.0.0.2", headers={"X-Forwarded-For": "203.0.113.7"}).status_code == 200
    prepended = {"X-Forwarded-For": "203.0.113.7, 198.51.100.1"}  # the client's own entry comes first
    assert chat(behind, token, ip="10.0.0.2", headers=prepended).status_code == 403
    assert len(upstream.requests) == 1


# --------------------------------------------------------------------------- granular scopes


def test_scope_refuses_methods_paths_and_models(client, api, proj, provider, upstream):
    token = issue_token(api, proj)
    set_policy(api, proj, token, routes=["POST v1/chat/completions"], models=["gpt-4o-mini*"])
    headers = bearer(token["token"])
    refused = client.get("/proxy/openai/v1/models", headers=headers)
    assert refused.status_code == 403 and "may not call GET v1/models" in refused.json["message"]
    assert "POST v1/chat/completions" in refused.json["message"]
    refused = client.post("/proxy/openai/v1/embeddings", json={"model": "gpt-4o-mini"}, headers=headers)
    assert refused.status_code == 403 and "POST v1/embeddings" in refused.json["message"]
    refused = chat(client, token, {**BODY, "model": "gpt-4o"})
    assert refused.status_code == 403 and "may not use the model 'gpt-4o'" in refused.json["message"]
    nameless = {key: value for key, value in BODY.items() if key != "model"}
    assert "names none" in chat(client, token, nameless).json["message"]
    assert chat(client, token, b"not json").status_code == 403
    assert chat(client, token, b'{"model": "gpt-4o-mini", "model": "gpt-4o"}').status_code == 403
    too_big = json.dumps({**BODY, "pad": "x" * (1 << 20)}).encode()
    refused = chat(client, token, too_big)
    assert refused.status_code == 413 and "over 1048576 bytes" in refused.json["message"]
    assert upstream.requests == []


@pytest.mark.parametrize("size", [100, 200_000])
def test_an_allowed_body_is_forwarded_intact(client, api, proj, provider, upstream, size):
    token = issue_token(api, proj)
    set_policy(api, proj, token, models=["gpt-4o-mini"], limits={"tokens_per_month": 10**9})
    raw = b'{ "model" : "gpt-4o-mini",\n "messages": [], "max_tokens": 5, "pad": "' + b"\xc3\xa9" * size + b'" }'
    assert chat(client, token, raw).status_code == 200
    assert upstream.requests[-1].body == raw


def test_a_chunked_body_is_forwarded_intact(live, api, proj, upstream):
    put_provider(api, proj, "openai", template="openai", api_key=FAKE_KEY, base_url=upstream.url)
    token = issue_token(api, proj)
    set_policy(api, proj, token, models=["gpt-4o-mini"])
    raw = json.dumps({**BODY, "pad": "y" * 100_000}).encode()
    connection = http.client.HTTPConnection(urlsplit(live.url).netloc, timeout=10)
    try:
        headers = {**bearer(token["token"]), "Content-Type": "application/json"}
        connection.request("POST", CHAT, body=iter([raw[:1000], raw[1000:]]), headers=headers, encode_chunked=True)
        assert connection.getresponse().status == 200
    finally:
        connection.close()
    assert upstream.requests[-1].body == raw


def test_a_call_without_a_body_keeps_nothing_of_its_reservation(client, api, proj, provider):
    token = issue_token(api, proj)
    set_policy(api, proj, token, limits={"tokens_per_day": 5000})  # one 4,096-token estimate fits, not two
    for _ in range(3):
        response = client.get("/proxy/openai/v1/models", headers=bearer(token["token"]))
        response.close()
        assert response.status_code == 200
    assert chat(client, token).status_code == 200
