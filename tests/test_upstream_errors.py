"""The outbound seam: `Upstream` turns urllib3's failures into the domain's three, which
`app/errors.py` answers as 502/504. Real sockets on 127.0.0.1; no Vault needed."""

from __future__ import annotations

import time

import pytest

from app import errors
from app.proxy.upstream import Upstream, UpstreamBlocked, UpstreamError, UpstreamTimeout, UpstreamUnreachable
from config import Config
from tests.servers import Listener, RawUpstream, free_port

READ_TIMEOUT = 0.5


def _upstream(allow_private: bool = True) -> Upstream:
    config = Config.from_env(
        {
            "VAULT_ADDR": "http://127.0.0.1:1",
            "VAULT_APPROLE_FILE": "/nonexistent/approle.json",
            "JETPERO_ALLOW_PRIVATE_UPSTREAMS": str(allow_private).lower(),
            "JETPERO_UPSTREAM_READ_TIMEOUT": str(READ_TIMEOUT),
        }
    )
    return Upstream(config)


def _send(upstream: Upstream, url: str):
    return upstream.send("GET", f"{url}/v1/models", body=None, headers={}, chunked=False)


@pytest.fixture
def raw():
    made = []

    def build(reply: bytes, *, close: bool) -> RawUpstream:
        made.append(RawUpstream(reply, close=close))
        return made[-1]

    yield build
    for server in made:
        server.stop()


def test_a_private_address_is_blocked_before_a_byte_is_sent():
    listener = Listener()
    try:
        with pytest.raises(UpstreamBlocked):
            _send(_upstream(allow_private=False), listener.url)
        time.sleep(0.3)  # what the listener would have read by now
        assert listener.received == b""
    finally:
        listener.stop()


def test_a_refused_connection_is_unreachable():
    with pytest.raises(UpstreamUnreachable):
        _send(_upstream(), f"http://127.0.0.1:{free_port()}")


def test_a_hang_up_before_the_head_is_unreachable():
    listener = Listener()  # reads the request, answers nothing, hangs up
    try:
        with pytest.raises(UpstreamUnreachable):
            _send(_upstream(), listener.url)
    finally:
        listener.stop()


def test_a_silent_provider_times_out_after_the_read_timeout(raw):
    silent = raw(b"", close=False)
    started = time.monotonic()
    with pytest.raises(UpstreamTimeout):
        _send(_upstream(), silent.url)
    assert READ_TIMEOUT <= time.monotonic() - started < READ_TIMEOUT + 1


@pytest.mark.parametrize(
    "reply,close,error",
    [
        (b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 1000\r\n\r\n{", False, UpstreamTimeout),
        (b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 1000\r\n\r\n{", True, UpstreamUnreachable),
        (b"HTTP/1.1 400 Bad Request\r\nContent-Encoding: gzip\r\nContent-Length: 9\r\n\r\nnot-gzip!", True,
         UpstreamUnreachable),
    ],
    ids=["stalled", "truncated", "undecodable"],
)  # fmt: skip
def test_a_broken_error_body_is_translated_and_its_connection_closed(raw, reply, close, error):
    server, upstream = raw(reply, close=close), _upstream()
    answer = _send(upstream, server.url)
    with pytest.raises(error):
        upstream.error_body(answer, 1 << 20)
    assert answer.closed


def test_a_whole_error_body_is_read_decoded_and_its_connection_reused(raw):
    server = raw(b'HTTP/1.1 429 Too Many Requests\r\nContent-Length: 13\r\n\r\n{"error": ""}', close=False)
    upstream = _upstream()
    answer = _send(upstream, server.url)
    assert upstream.error_body(answer, 1 << 20) == b'{"error": ""}'
    assert answer.connection is None  # handed back to the pool


@pytest.mark.parametrize(
    "error,status,message",
    [
        (
            UpstreamBlocked,
            403,
            "This provider's base_url is a loopback, private or link-local address, which this JetPero refuses"
            " (JETPERO_ALLOW_PRIVATE_UPSTREAMS); an admin must point the provider at a public address.",
        ),
        (UpstreamUnreachable, 502, "The provider could not be reached."),
        (UpstreamTimeout, 504, "The provider did not answer in time."),
    ],
)
def test_each_upstream_error_has_its_answer_in_the_one_table(error, status, message):
    assert issubclass(error, UpstreamError)
    assert errors.TABLE[error] == (status, message)
    assert errors.status_of(error()) == status
