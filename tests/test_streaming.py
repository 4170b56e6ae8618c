"""Streaming both ways through the served configuration: gunicorn with gevent workers.

Tokens and providers are made through the in-process app's admin API (same Vault); the proxied
calls go over real sockets to gunicorn, whose config bounds every call to `DEADLINE` seconds.
"""

from __future__ import annotations

import hashlib
import os
import time

import openai
import pytest
import requests
import urllib3

from tests.helpers import FAKE_KEY, bearer
from tests.servers import Gunicorn
from tests.upstream import OPENAI_TEXT

DEADLINE = 2.0
READ_TIMEOUT = 5.0
SHORT_READ_TIMEOUT = 0.5  # of `quick`, whose deadline is far


def _serve(bao, approle_file, log_dir, read_timeout: float, deadline: float, workers: int = 2) -> Gunicorn:
    env = {
        "VAULT_ADDR": bao.addr,
        "VAULT_APPROLE_FILE": approle_file,
        "VAULT_TIMEOUT": "2",
        "JETPERO_ALLOW_PRIVATE_UPSTREAMS": "true",
        "JETPERO_SYNC_INTERVAL": "0.5",
        "JETPERO_UPSTREAM_READ_TIMEOUT": str(read_timeout),
        "JETPERO_UPSTREAM_DEADLINE": str(deadline),
        "JETPERO_LOG_LEVEL": "WARNING",
    }
    return Gunicorn(env, log_dir / "gunicorn.log", workers=workers)


@pytest.fixture(scope="module")
def served(bao, approle_file, tmp_path_factory):
    server = _serve(bao, approle_file, tmp_path_factory.mktemp("gunicorn"), READ_TIMEOUT, DEADLINE)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def quick(bao, approle_file, tmp_path_factory):
    server = _serve(bao, approle_file, tmp_path_factory.mktemp("quick"), SHORT_READ_TIMEOUT, 30, workers=1)
    yield server
    server.stop()


@pytest.fixture
def http():
    manager = urllib3.PoolManager(retries=False)
    yield manager
    manager.clear()


class Reading:
    """What a client reads of a streamed answer: (arrival time, bytes) of each read, and how it ended."""

    def __init__(self, response, limit: float = 10.0) -> None:
        start, self.arrivals, self.complete = time.monotonic(), [], False
        while time.monotonic() - start < limit:
            try:
                chunk = response.read1(65536)
            except urllib3.exceptions.ProtocolError:  # the connection dropped before the body's end
                return
            if not chunk:
                self.complete = True
                return
            self.arrivals.append((time.monotonic(), chunk))

    @property
    def body(self) -> bytes:
        return b"".join(chunk for _, chunk in self.arrivals)


def _drip(http, server, token: str, count: int, interval: float):
    """An unread streamed answer of `count` SSE events, one each `interval` seconds, through `server`."""
    return http.request(
        "GET",
        f"{server.url}/proxy/openai/v1/drip?count={count}&interval={interval}",
        headers=bearer(token),
        preload_content=False,
    )


def test_sse_events_reach_the_client_as_they_are_sent(served, http, provider, project_token, upstream):
    started = time.monotonic()
    response = _drip(http, served, project_token, 4, 0.3)
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/event-stream")
    assert response.headers["X-Accel-Buffering"] == "no"
    assert "no-cache" in response.headers["Cache-Control"]
    reading = Reading(response)
    arrivals = reading.arrivals
    assert reading.complete and reading.body == b"".join(b"data: %d\n\n" % n for n in range(4))
    first = next(t for t, chunk in arrivals if b"data: 0" in chunk) - started
    last = next(t for t, chunk in arrivals if b"data: 3" in chunk) - started
    assert last >= 0.85  # the upstream sent the last event ~0.9 s in
    assert first < 0.5 and last - first >= 0.8, (first, last)  # the first was relayed long before


def test_client_disconnect_closes_the_upstream(served, http, provider, project_token, upstream):
    response = _drip(http, served, project_token, 200, 0.05)
    assert b"data: 0" in response.read1(65536)
    response.connection.sock.close()  # the client goes away mid-stream
    response.release_conn()
    assert upstream.wait_for(lambda: upstream.closed_streams >= 1, timeout=5)


def test_read_timeout_cuts_a_stream_gone_silent(quick, http, provider, project_token, upstream):
    """The second event comes 1.5 s after the first: the wait for it is cut after the read timeout."""
    started = time.monotonic()
    response = _drip(http, quick, project_token, 3, 1.5)
    reading = Reading(response)
    took = time.monotonic() - started
    assert reading.body == b"data: 0\n\n"
    assert not reading.complete  # dropped, not ended: the client knows it did not get the whole answer
    assert SHORT_READ_TIMEOUT <= took <= SHORT_READ_TIMEOUT * 1.25 + 0.6, took  # one sweep tick: a quarter
    assert upstream.wait_for(lambda: upstream.closed_streams >= 1, timeout=3)


def test_read_timeout_bounds_each_silence_not_the_stream(quick, http, provider, project_token, upstream):
    response = _drip(http, quick, project_token, 6, 0.25)
    reading = Reading(response)
    assert reading.complete and reading.body == b"".join(
        b"data: %d\n\n" % n for n in range(6)
    )  # 1.25 s in all, 0.25 s silences


def test_deadline_bounds_an_endless_stream(served, http, provider, project_token, upstream):
    started = time.monotonic()
    response = _drip(http, served, project_token, 100000, 0.05)
    reading = Reading(response, limit=DEADLINE + 5)
    took = time.monotonic() - started
    assert reading.arrivals and DEADLINE - 0.5 <= took <= DEADLINE + 1.0, took
    assert not reading.complete
    assert upstream.wait_for(lambda: upstream.closed_streams >= 1, timeout=3)


def test_deadline_bounds_a_stream_gone_silent(served, http, provider, project_token, upstream):
    """Events every 1.5 s: the wait for the third, shorter than the read timeout, overruns the deadline."""
    started = time.monotonic()
    response = _drip(http, served, project_token, 3, 1.5)
    reading = Reading(response, limit=READ_TIMEOUT * 3)
    took = time.monotonic() - started
    assert b"data: 1" in reading.body and b"data: 2" not in reading.body and not reading.complete
    assert took <= DEADLINE + 0.6, took


def test_deadline_bounds_a_slow_answer(served, http, provider, project_token, upstream):
    started = time.monotonic()
    response = http.request(
        "GET", f"{served.url}/proxy/openai/v1/slow?seconds={READ_TIMEOUT - 1}", headers=bearer(project_token)
    )
    took = time.monotonic() - started
    assert response.status == 504
    assert took <= DEADLINE + 1.0, took


def _upload(served, token: str, body) -> requests.Response:
    return requests.post(
        f"{served.url}/proxy/openai/v1/files",
        data=body,
        headers={**bearer(token), "Content-Type": "application/octet-stream"},
        timeout=30,
    )


def test_chunked_request_body_is_forwarded_intact(served, provider, project_token, upstream):
    payload = os.urandom(6 * 1024 * 1024 + 123)

    def pieces():
        view = memoryview(payload)
        for offset in range(0, len(payload), 256 * 1024):
            yield bytes(view[offset : offset + 256 * 1024])

    response = _upload(served, project_token, pieces())  # a generator: Transfer-Encoding: chunked
    assert response.status_code == 200, response.text
    assert response.json()["body_len"] == len(payload)
    seen = upstream.requests[-1]
    assert hashlib.sha256(seen.body).digest() == hashlib.sha256(payload).digest()
    assert seen.header("authorization") == f"Bearer {FAKE_KEY}"


def test_sized_request_body_is_forwarded_intact(served, provider, project_token, upstream):
    payload = os.urandom(5 * 1024 * 1024)
    response = _upload(served, project_token, payload)
    assert response.status_code == 200 and response.json()["body_len"] == len(payload)
    seen = upstream.requests[-1]
    assert seen.header("content-length") == str(len(payload))
    assert hashlib.sha256(seen.body).digest() == hashlib.sha256(payload).digest()


def test_openai_sdk_stream_through_gunicorn(served, provider, project_token, upstream):
    client = openai.OpenAI(base_url=f"{served.url}/proxy/openai/v1", api_key=project_token, max_retries=0)
    stream = client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}], stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == "".join(OPENAI_TEXT)
    assert upstream.requests[-1].header("authorization") == f"Bearer {FAKE_KEY}"


def test_an_sdk_is_told_when_the_answer_is_cut(quick, provider, project_token, upstream):
    """The provider stalls mid-answer: the SDK raises instead of returning the first words as all of it,
    and the server logs the cut without a traceback."""
    client = openai.OpenAI(base_url=f"{quick.url}/proxy/openai/v1", api_key=project_token, max_retries=0)
    upstream.event_delay = SHORT_READ_TIMEOUT * 3
    text = []
    try:
        stream = client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}], stream=True)
        with pytest.raises(openai.APIConnectionError):
            for chunk in stream:
                text.append(chunk.choices[0].delta.content or "")
    finally:
        upstream.event_delay = 0.01
    assert "".join(OPENAI_TEXT) not in "".join(text)
    log = quick.log_path.read_text(errors="replace")
    assert "upstream silent past the read timeout" in log
    assert "Traceback" not in log
