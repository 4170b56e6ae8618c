"""bench.servers' command lines: each server serves the floor, a JSON answer and a whole SSE stream, framed right."""

from __future__ import annotations

import http.client
import signal
import subprocess
import sys

import pytest

from bench.servers import installed, server_argv
from bench.targets import CHAT_BODY, ROOT, wait_http
from tests.helpers import missing
from tools.procs import free_port, stop


@pytest.fixture(scope="module")
def upstream():
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "bench.upstream", "--port", str(port)], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        wait_http(f"http://127.0.0.1:{port}/v1/chat/completions", {}, proc=proc)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(proc)


@pytest.mark.parametrize("server", ["gunicorn", "uwsgi", "granian"])
def test_each_server_serves_json_and_a_whole_stream_on_one_connection(server, upstream, tmp_path):
    if not installed(server):
        missing(f"{server} is not installed (requirements-dev.txt has it: make install)")
    port = free_port()
    proc = subprocess.Popen(server_argv(server, "bench.floor:app", port, 1, tmp_path), cwd=ROOT,
                            env={"PATH": "/usr/bin:/bin", "BENCH_UPSTREAM": upstream},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        wait_http(f"http://127.0.0.1:{port}/v1/chat/completions", {}, timeout=30, proc=proc)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("POST", "/v1/chat/completions", CHAT_BODY, {"Content-Type": "application/json"})
        answer = conn.getresponse()
        assert answer.status == 200
        assert b'"chat.completion"' in answer.read()
        # The same keep-alive connection: the stream's end must be framed (chunked), not left open.
        conn.request("GET", "/sse?events=3&interval=0.01", headers={"Accept": "text/event-stream"})
        stream = conn.getresponse()
        assert stream.status == 200
        assert stream.getheader("Content-Type") == "text/event-stream"
        assert stream.read().count(b"data: ") == 3
        conn.close()
    finally:
        stop(proc, sig=signal.SIGINT)
