"""JETPERO_TRUSTED_PROXIES: X-Forwarded-* is believed only from that many proxies (werkzeug's ProxyFix).

The client IP JetPero derives (`request.remote_addr`, the request line's `client_ip`) is what
logs, and later audit records and IP allowlists, rely on: a client must not choose it.
"""

from __future__ import annotations

import contextlib
import io
import json
import urllib.request

import pytest
from flask import jsonify, request

from app import create_app
from app.observability import logs
from config import ConfigError
from tests.helpers import make_config
from tests.servers import LiveServer

SPOOFED = {"X-Forwarded-For": "198.51.100.66", "X-Forwarded-Proto": "https", "X-Forwarded-Host": "evil.example"}


@contextlib.contextmanager
def _app(bao, approle_file, proxies: int):
    """A JetPero app trusting `proxies` proxies, with a route that shows what it derived, and the
    request lines its log handler writes meanwhile."""
    app = create_app(make_config(bao, approle_file, JETPERO_TRUSTED_PROXIES=proxies))

    @app.get("/test-client-ip")
    def client_ip():
        return jsonify(remote_addr=request.remote_addr, scheme=request.scheme, host=request.host)

    handler = logs.handler()
    saved, handler.stream = handler.stream, io.StringIO()
    captured = handler.stream

    def lines() -> list[dict]:
        handler.drain()
        parsed = [json.loads(line) for line in captured.getvalue().splitlines()]
        return [line for line in parsed if line["logger"] == "jetpero.request"]

    try:
        yield app, lines
    finally:
        handler.stream = saved
        app.extensions["jetpero"].stop()


def test_default_trusts_no_proxy(bao, approle_file):
    with _app(bao, approle_file, 0) as (app, lines):
        answer = app.test_client().get("/test-client-ip", headers=SPOOFED, environ_base={"REMOTE_ADDR": "203.0.113.5"})
        answer.close()  # the request line is written when the server closes the response
        assert answer.json == {"remote_addr": "203.0.113.5", "scheme": "http", "host": "localhost"}
        assert [line["client_ip"] for line in lines()] == ["203.0.113.5"]


def test_spoofed_header_over_a_real_socket_is_ignored(bao, approle_file):
    with _app(bao, approle_file, 0) as (app, lines):
        server = LiveServer(app)
        try:
            req = urllib.request.Request(f"{server.url}/test-client-ip", headers=SPOOFED)
            with urllib.request.urlopen(req, timeout=5) as resp:  # noqa: S310 - our own loopback server
                body = json.loads(resp.read())
        finally:
            server.stop()
        assert body["remote_addr"] == "127.0.0.1" and body["scheme"] == "http"
        assert "evil.example" not in body["host"]
        assert [line["client_ip"] for line in lines()] == ["127.0.0.1"]


def test_one_trusted_proxy_takes_the_right_most_entry(bao, approle_file):
    with _app(bao, approle_file, 1) as (app, lines):
        # The client sent "X-Forwarded-For: 198.51.100.66"; the proxy appended the address it saw.
        headers = {**SPOOFED, "X-Forwarded-For": "198.51.100.66, 203.0.113.9"}
        answer = app.test_client().get("/test-client-ip", headers=headers, environ_base={"REMOTE_ADDR": "10.0.0.2"})
        answer.close()
        assert answer.json["remote_addr"] == "203.0.113.9"
        assert answer.json["scheme"] == "https"
        assert [line["client_ip"] for line in lines()] == ["203.0.113.9"]


def test_two_trusted_proxies_take_the_second_entry_from_the_right(bao, approle_file):
    with _app(bao, approle_file, 2) as (app, _):
        headers = {"X-Forwarded-For": "198.51.100.66, 203.0.113.9, 10.0.0.3"}
        answer = app.test_client().get("/test-client-ip", headers=headers, environ_base={"REMOTE_ADDR": "10.0.0.2"})
        assert answer.json["remote_addr"] == "203.0.113.9"


def test_a_negative_count_is_refused(bao, approle_file):
    with pytest.raises(ConfigError, match="JETPERO_TRUSTED_PROXIES"):
        make_config(bao, approle_file, JETPERO_TRUSTED_PROXIES=-1)
