"""The proxy's phases as a concern sees them: admit can refuse, every call is settled once with
its status, outcome, durations and byte counts, and each relayed chunk reaches the observers.
Against the real OpenBao and the fake upstream; the concern is the test's own recorder."""

from __future__ import annotations

import http.client
import json
import time

import pytest
import requests

from app.errors import ApiError
from app.proxy.call import Call, Concerns
from app.proxy.views import CONCERNS
from app.state import Cache
from tests.conftest import FAKE_KEY, project_path
from tests.helpers import bearer
from tests.servers import LiveServer, RawUpstream, free_port


class Recorder:
    """A concern with every phase: records what it was shown, refuses when told to."""

    def __init__(self, refuse: bool = False) -> None:
        self.refuse = refuse
        self.admitted: list[Call] = []
        self.settled: list[Call] = []
        self.chunks: list[bytes] = []

    def admit(self, call: Call) -> None:
        self.admitted.append(call)
        if self.refuse:
            raise ApiError(429, "Slow down.")

    def relay(self, call: Call):
        return self.chunks.append

    def settle(self, call: Call) -> None:
        self.settled.append(call)

    def only_settled(self) -> Call:
        assert len(self.settled) == 1, self.settled
        return self.settled[0]


class SettleOnly:
    def __init__(self) -> None:
        self.settled: list[Call] = []

    def settle(self, call: Call) -> None:
        self.settled.append(call)


class Broken:
    def settle(self, call: Call) -> None:
        raise RuntimeError("a concern's own bug")


@pytest.fixture
def concerns(app, monkeypatch):
    """Install concerns on the session app for one test: `concerns(a, b, ...)`."""

    def install(*items):
        monkeypatch.setitem(app.extensions, CONCERNS, Concerns(items))
        return items

    return install


def _wait_settled(recorder, timeout: float = 5.0) -> Call:
    deadline = time.monotonic() + timeout
    while not recorder.settled and time.monotonic() < deadline:
        time.sleep(0.02)
    return recorder.only_settled()


def test_a_complete_call_is_settled_once_with_its_figures(client, concerns, provider, project_token, upstream):
    (recorder,) = concerns(Recorder())
    body = json.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}]}).encode()
    response = client.post(
        "/proxy/openai/v1/chat/completions", data=body, headers=bearer(project_token), content_type="application/json"
    )
    relayed = response.get_data()
    response.close()
    assert response.status_code == 200
    call = recorder.only_settled()
    assert recorder.admitted == [call]
    assert (call.status, call.outcome, call.provider) == (200, "complete", "openai")
    assert call.claims["org"] and call.claims["project"]
    assert call.bytes_in == len(body) == len(upstream.requests[-1].body)
    assert call.bytes_out == len(relayed) > 0
    assert b"".join(recorder.chunks) == relayed  # the observer saw exactly what was relayed
    assert call.started <= call.sent <= call.ended and call.upstream_ms >= 0


def test_a_streamed_answer_reaches_the_observer_chunk_by_chunk(app, concerns, provider, project_token, upstream):
    (recorder,) = concerns(Recorder())
    server = LiveServer(app)
    try:
        response = requests.get(
            f"{server.url}/proxy/openai/v1/drip?count=5&interval=0.05", headers=bearer(project_token), timeout=10
        )
    finally:
        server.stop()
    assert response.status_code == 200
    call = _wait_settled(recorder)
    assert call.outcome == "complete"
    assert len(recorder.chunks) >= 2  # handed over as they came, not buffered into one
    assert b"".join(recorder.chunks) == response.content
    assert call.bytes_out == len(response.content)


def test_a_chunked_request_body_is_counted(app, concerns, provider, project_token, upstream):
    (recorder,) = concerns(Recorder())
    server = LiveServer(app)
    parts = [b"a" * 1000, b"b" * 70000, b"c"]
    try:
        response = requests.post(
            f"{server.url}/proxy/openai/v1/upload", data=iter(parts), headers=bearer(project_token), timeout=10
        )
    finally:
        server.stop()
    assert response.status_code == 200
    assert _wait_settled(recorder).bytes_in == sum(map(len, parts)) == len(upstream.requests[-1].body)


def test_a_refused_token_is_settled_without_being_admitted(client, concerns, provider, upstream):
    (recorder,) = concerns(Recorder())
    assert client.get("/proxy/openai/v1/models", headers=bearer("x.y.z")).status_code == 401
    call = recorder.only_settled()
    assert (call.status, call.outcome, call.claims) == (401, "refused", None)
    assert recorder.admitted == [] and upstream.requests == []


def test_a_concern_can_refuse_in_admit_and_the_others_still_settle(client, concerns, provider, project_token, upstream):
    refusing, other = concerns(Recorder(refuse=True), SettleOnly())
    response = client.get("/proxy/openai/v1/models", headers=bearer(project_token))
    assert (response.status_code, response.json["message"]) == (429, "Slow down.")
    assert upstream.requests == []
    call = refusing.only_settled()
    assert (call.status, call.outcome) == (429, "refused")
    assert other.settled == [call]


def test_failed_calls_are_settled_with_their_error_status(api, client, concerns, project, provider, project_token):
    (recorder,) = concerns(Recorder())
    api.put(
        f"{project_path(project)}/providers/closed",
        json={"template": "custom", "api_key": FAKE_KEY, "base_url": f"http://127.0.0.1:{free_port()}"},
    )
    narrow = api.post(
        f"{project_path(project)}/tokens",
        json={"name": "narrow", "environment": "development", "expires_in": 600, "scope": ["openai"]},
    ).json["token"]
    assert client.get("/proxy/closed/v1/models", headers=bearer(narrow)).status_code == 403  # out of its scope
    assert client.get("/proxy/absent/v1/models", headers=bearer(project_token)).status_code == 404
    assert client.get("/proxy/closed/v1/models", headers=bearer(project_token)).status_code == 502
    assert [(c.status, c.outcome) for c in recorder.settled] == [(403, "refused"), (404, "failed"), (502, "failed")]
    assert len(recorder.admitted) == 2


def test_an_error_answer_is_settled_and_observed_scrubbed(client, concerns, provider, project_token, upstream):
    (recorder,) = concerns(Recorder())
    response = client.get("/proxy/openai/v1/echo-key", headers=bearer(project_token))
    response.close()
    assert response.status_code == 401
    call = recorder.only_settled()
    assert (call.status, call.outcome, call.bytes_out) == (401, "complete", len(response.get_data()))
    assert b"".join(recorder.chunks) == response.get_data()
    assert FAKE_KEY.encode() not in b"".join(recorder.chunks)


def test_a_body_cut_by_the_provider_is_settled_as_cut(api, app, concerns, project, project_token):
    (recorder,) = concerns(Recorder())
    raw = RawUpstream(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{", close=True)
    server = LiveServer(app)
    conn = http.client.HTTPConnection("127.0.0.1", int(server.url.rsplit(":", 1)[1]), timeout=10)
    try:
        api.put(
            f"{project_path(project)}/providers/openai",
            json={"template": "custom", "api_key": FAKE_KEY, "base_url": raw.url},
        )
        conn.request("GET", "/proxy/openai/v1/models", headers=bearer(project_token))
        with pytest.raises(http.client.IncompleteRead):
            conn.getresponse().read()
        call = _wait_settled(recorder)
    finally:
        conn.close()
        server.stop()
        raw.stop()
    assert (call.status, call.outcome, call.bytes_out) == (200, "cut", 1)


def test_a_client_gone_mid_stream_is_settled_as_gone(app, concerns, provider, project_token, upstream):
    (recorder,) = concerns(Recorder())
    server = LiveServer(app)
    conn = http.client.HTTPConnection("127.0.0.1", int(server.url.rsplit(":", 1)[1]), timeout=10)
    try:
        conn.request("GET", "/proxy/openai/v1/drip?count=50&interval=0.1", headers=bearer(project_token))
        response = conn.getresponse()
        assert response.status == 200 and response.read1(65536)
        response.close()
        conn.close()  # the client hangs up after its first event
        call = _wait_settled(recorder)
    finally:
        server.stop()
    assert call.outcome == "gone"
    assert 0 < call.bytes_out < 50 * len(b"data: 49\n\n")


def test_a_failing_settle_breaks_neither_the_answer_nor_the_next_concern(
    client, concerns, provider, project_token, upstream
):
    _, after = concerns(Broken(), SettleOnly())
    response = client.get("/proxy/openai/v1/models", headers=bearer(project_token))
    assert response.status_code == 200 and response.get_data()
    response.close()
    assert len(after.settled) == 1 and after.settled[0].outcome == "complete"


def test_concerns_list_only_the_phases_they_define():
    recorder, settle_only = Recorder(), SettleOnly()
    concerns = Concerns([recorder, settle_only])
    assert concerns.admit == (recorder.admit,)
    assert concerns.relay == (recorder.relay,)
    assert concerns.settle == (recorder.settle, settle_only.settle)
    assert Concerns().settle == ()


def test_get_or_load_loads_once_then_hits_and_passes_its_arguments():
    cache, loads = Cache("test"), []

    def load(*args):
        loads.append(args)
        return {"args": args}

    assert cache.get_or_load("k", load, 1, "two") == {"args": (1, "two")}
    assert cache.get_or_load("k", load, 3) == {"args": (1, "two")}
    assert loads == [(1, "two")]
    assert cache.take_counts() == (1, 1)


def test_get_or_load_reloads_a_value_past_its_expiry():
    cache = Cache("test", expiry=lambda value: value["exp"])
    cache.get_or_load("k", lambda: {"exp": time.time() - 1, "n": 1})
    assert cache.get_or_load("k", lambda: {"exp": time.time() + 60, "n": 2})["n"] == 2
    assert cache.get_or_load("k", lambda: {"exp": 0, "n": 3})["n"] == 2  # fresh now: a hit
