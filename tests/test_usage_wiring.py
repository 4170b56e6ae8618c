"""One usage record per proxied call, with the token counts the provider's own SDKs see; the
live stream shows it whichever app instance served it; nothing in the usage path fails a call."""

from __future__ import annotations

import json
import socket
import struct
import subprocess
import sys
import time

import anthropic
import openai
import pytest
import urllib3
from sqlalchemy import text

from app.observability.metrics import USAGE_DROPPED
from app.proxy.call import Concerns, concerns_for
from app.proxy.usage import Usage
from app.proxy.views import CONCERNS
from app.services import usage
from tests.helpers import FAKE_KEY, Project, bearer, issue_token, project_path, put_provider
from tests.servers import LiveServer
from tests.upstream import OPENAI_TEXT

MESSAGES = [{"role": "user", "content": "Say hello"}]
COMPLETION = len(OPENAI_TEXT)  # the fake upstream's completion tokens (prompt: 9)


def wait_records(app, project: str, count: int, timeout: float = 20.0) -> list[dict]:
    """The project's records once `count` are in (the writer's second, a streamed call's close on a
    loaded machine), or what is in at the timeout."""
    org, slug = project.split("/")
    ends = time.monotonic() + timeout
    while True:
        found = usage.records(app.extensions["jetpero.db"], org, slug)["records"]
        if len(found) >= count or time.monotonic() > ends:
            return found
        time.sleep(0.1)


@pytest.fixture
def with_anthropic(api, project, upstream):
    put_provider(
        api, Project(*project.split("/")), "anthropic", template="anthropic", api_key=FAKE_KEY, base_url=upstream.url
    )


def test_openai_sdk_calls_are_recorded_with_their_token_counts(app, live, project, project_token):
    client = openai.OpenAI(base_url=f"{live.url}/proxy/openai/v1", api_key=project_token, max_retries=0, timeout=10)
    answer = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert answer.usage.total_tokens == 9 + COMPLETION
    stream = client.chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    )
    streamed_usage = [chunk.usage for chunk in stream if chunk.usage]
    assert streamed_usage[0].completion_tokens == COMPLETION
    found = wait_records(app, project, 2)
    assert len(found) == 2, [(r["path"], r["status"], r["bytes_out"], r["completion_tokens"]) for r in found]
    for record in found:
        assert (record["model"], record["prompt_tokens"]) == ("gpt-4o-mini", 9), record
        assert (record["completion_tokens"], record["total_tokens"]) == (COMPLETION, 9 + COMPLETION)
        assert (record["provider"], record["method"], record["status"]) == ("openai", "POST", 200)
        assert record["path"] == "/v1/chat/completions"
        assert (record["token_name"], record["environment"], record["end_user"]) == ("ci", "development", None)
        assert len(record["token_id"]) == 32 and record["bytes_in"] > 0 and record["bytes_out"] > 0
        assert record["duration_ms"] >= record["ttfb_ms"] >= 0 and record["upstream_ms"] >= record["ttfb_ms"]


def test_a_stream_whose_client_resets_the_connection_at_its_end_is_recorded(app, live, project, project_token):
    """The openai SDK stops reading at `data: [DONE]` and closes: with the answer's last chunk in
    by then, unread, that close is a reset, and werkzeug's server never closed the answer (its
    drain of the socket raised first), so the call was never settled. Here the reset is certain:
    a byte sent after the request keeps that drain reading until the connection ends."""
    streamed = {"model": "gpt-4o-mini", "messages": MESSAGES, "stream": True, "stream_options": {"include_usage": True}}
    body = json.dumps(streamed).encode()
    host, port = live.url.removeprefix("http://").split(":")
    head = (
        f"POST /proxy/openai/v1/chat/completions HTTP/1.1\r\nHost: {host}:{port}\r\n"
        f"Authorization: Bearer {project_token}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(head.encode() + body)
        answer = sock.recv(65536)  # the answer has begun: the request was read whole
        sock.sendall(b"x")  # left unread by the app
        while not answer.endswith(b"\r\n0\r\n\r\n") and (more := sock.recv(65536)):  # to the chunked end
            answer += more
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close = reset
    assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(b"data: [DONE]\n\n\r\n0\r\n\r\n")
    found = wait_records(app, project, 1)
    assert [(r["status"], r["completion_tokens"]) for r in found] == [(200, COMPLETION)]


def test_anthropic_sdk_calls_are_recorded_with_their_token_counts(app, live, project, with_anthropic, api):
    token = issue_token(api, Project(*project.split("/")), name="claude", environment="production")["token"]
    client = anthropic.Anthropic(base_url=f"{live.url}/proxy/anthropic", api_key=token, max_retries=0, timeout=10)
    message = client.messages.create(model="claude-fake", max_tokens=64, messages=MESSAGES)
    assert message.usage.input_tokens == 9
    with client.messages.stream(model="claude-fake", max_tokens=64, messages=MESSAGES) as stream:
        assert "".join(stream.text_stream) == "".join(OPENAI_TEXT)
    found = wait_records(app, project, 2)
    assert len(found) == 2
    for record in found:
        assert (record["provider"], record["model"], record["token_name"]) == (
            "anthropic",
            "claude-fake",
            "claude",
        )
        assert (record["prompt_tokens"], record["completion_tokens"]) == (9, COMPLETION), record
        assert record["total_tokens"] == 9 + COMPLETION and record["environment"] == "production"


def test_the_path_is_recorded_without_its_query_and_errors_are_recorded(app, client, project, project_token):
    ok = client.get("/proxy/openai/v1/models?key=not-kept", headers=bearer(project_token))
    missing = client.get("/proxy/nope/v1/models", headers=bearer(project_token))
    assert (ok.status_code, missing.status_code) == (200, 404)
    ok.close()  # the relayed body closed: the call is settled
    found = wait_records(app, project, 2)
    assert {(r["provider"], r["path"], r["status"]) for r in found} == {
        ("openai", "/v1/models", 200),
        ("nope", "/v1/models", 404),
    }
    assert "not-kept" not in json.dumps(found)


class Probe:
    """A concern listed after usage: what it finds in `call.notes["usage"]` at settle."""

    def __init__(self) -> None:
        self.seen: list = []

    def settle(self, call) -> None:
        self.seen.append(call.notes.get("usage"))


def test_the_concerns_after_usage_read_its_token_counts(make_app, operator_token, project, project_token):
    built = make_app()
    probe = Probe()
    built.extensions[CONCERNS] = Concerns((*built.extensions[CONCERNS].all, probe))
    body = {"model": "gpt-4o", "messages": MESSAGES}
    answered = built.test_client().post("/proxy/openai/v1/chat/completions", json=body, headers=bearer(project_token))
    assert answered.status_code == 200
    answered.close()
    assert probe.seen == [
        {"model": "gpt-4o", "prompt_tokens": 9, "completion_tokens": COMPLETION, "total_tokens": 9 + COMPLETION}
    ]


def test_usage_logging_can_be_switched_off(make_app, config):
    off = make_app(JETPERO_USAGE_LOG="false")
    assert not any(isinstance(c, Usage) for c in off.extensions[CONCERNS].all)
    assert any(isinstance(c, Usage) for c in concerns_for(config, off.extensions["jetpero.usage"]).all)


def test_a_broken_usage_database_fails_no_call_and_drops_are_published(make_app, tmp_path, project_token):
    built = make_app(
        JETPERO_DATABASE_URL=f"sqlite:///{tmp_path}/usage.db", JETPERO_METRICS_TOKEN="m-token", JETPERO_USAGE_QUEUE="2"
    )
    with built.extensions["jetpero.db"].begin() as conn:  # the database is "down" for usage records
        conn.execute(text("ALTER TABLE usage_records RENAME TO usage_records_gone"))
    client = built.test_client()
    before = USAGE_DROPPED._value.get()
    for _ in range(5):
        answered = client.get("/proxy/openai/v1/models", headers=bearer(project_token))
        assert answered.status_code == 200
        answered.close()
    writer = built.extensions["jetpero.usage"]
    assert writer.dropped == 3  # two wait for the database (the queue's bound), the rest are dropped
    assert client.get("/metrics", headers=bearer("m-token")).status_code == 200  # publishes them
    assert USAGE_DROPPED._value.get() - before == 3


def test_the_live_stream_shows_a_proxied_call_within_2_seconds_whichever_instance_served_it(
    make_app, tmp_path, api, project, project_token
):
    shared = f"sqlite:///{tmp_path}/shared.db"
    first, second = make_app(JETPERO_DATABASE_URL=shared), make_app(JETPERO_DATABASE_URL=shared)
    servers = [LiveServer(first), LiveServer(second)]
    http = urllib3.PoolManager()
    try:
        for streaming, serving in ((servers[0], servers[1]), (servers[0], servers[0])):
            stream = http.request(
                "GET",
                f"{streaming.url}/api/v1{project_path(project)}/usage/stream",
                headers={"Authorization": f"Bearer {api.token}"},
                preload_content=False,
                timeout=10,
            )
            assert stream.status == 200 and stream.read1(64).startswith(b"retry:")
            answered = http.request("GET", f"{serving.url}/proxy/openai/v1/models", headers=bearer(project_token))
            done = time.monotonic()
            assert answered.status == 200
            event = b""
            while b"event: usage" not in event:
                event += stream.read1(4096)
            seen = time.monotonic() - done
            stream.release_conn()
            stream.close()
            assert b'"path":"/v1/models"' in event
            assert seen < 2.5, seen  # 2 s (writer's second + stream poll), plus a loaded shared machine
    finally:
        for server in servers:
            server.stop()


GEVENT_CHECK = """
from gevent import monkey; monkey.patch_all()
import threading, time, gevent
from gevent.monkey import get_original
from app.services.usage import off_the_loop
real_sleep = get_original("time", "sleep")
native = get_original("threading", "get_native_id")
ticks = []
ticker = gevent.spawn(lambda: [ticks.append(1) or gevent.sleep(0.01) for _ in range(30)])
def slow_write():  # stands in for a SQLite write, which holds no greenlet switch
    real_sleep(0.3)
    return native()
ran_in = off_the_loop(slow_write)
print(ran_in != native(), len(ticks))
"""


def test_the_usage_write_runs_off_a_gevent_workers_loop():
    """Under gevent the writer is a greenlet: its database write runs in a real OS thread, so
    the worker keeps serving (a greenlet ticks) while it lasts."""
    out = subprocess.run([sys.executable, "-c", GEVENT_CHECK], capture_output=True, text=True, timeout=60, check=True)
    other_thread, ticks = out.stdout.split()
    assert other_thread == "True" and int(ticks) >= 10, out.stdout
