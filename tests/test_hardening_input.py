"""Issue 14: untrusted input never becomes a 500 (deep JSON in tokens, admin bodies, answers read
for usage), upstream `Connection`-named headers stay hop-by-hop, and request bodies are bounded."""

from __future__ import annotations

import json
import socket
import time

import pytest

from app.json_guard import MAX_ADMIN_BYTES
from app.rules.usage import UsageMeter
from tests.checks import assert_error
from tests.helpers import FAKE_KEY, Project, assert_uniform_401, b64, bearer, put_provider
from tests.servers import LiveServer, RawUpstream

DEEP = 5000  # far past Python's recursion limit


@pytest.fixture
def proj(project) -> Project:
    return Project(*project.split("/"))


@pytest.fixture
def raw():
    made = []

    def build(reply: bytes, *, close: bool = True) -> RawUpstream:
        made.append(RawUpstream(reply, close=close))
        return made[-1]

    yield build
    for server in made:
        server.stop()


# --------------------------------------------------------------------------- 1. deep JSON


def test_a_token_with_deeply_nested_json_in_its_header_is_a_uniform_401(client, provider, caplog):
    deep = b64(b"[" * 3000)  # as deep as the token size limit allows: past the recursion limit
    token = f"{deep}.e30.{b64(bytes(64))}"
    assert len(token) <= 4096
    caplog.set_level("ERROR")
    response = client.post("/proxy/openai/v1/chat/completions", headers=bearer(token), json={})
    assert_uniform_401(response)
    assert not [r for r in caplog.records if r.levelname == "ERROR"]


def test_an_admin_body_with_deeply_nested_json_is_a_400(api, org, caplog):
    caplog.set_level("ERROR")
    body = '{"slug": "x", "display_name": ' + "[" * DEEP + "]" * DEEP + "}"
    response = api.post(f"/orgs/{org}/projects", data=body, content_type="application/json")
    assert_error(response, 400)
    assert response.json["errors"] == {"json": {"_schema": ["Invalid JSON body."]}}
    assert not [r for r in caplog.records if r.levelname == "ERROR"]


def test_an_admin_body_nested_just_past_the_bound_is_a_400_and_a_shallow_one_is_read(api, org):
    deep = '{"slug": "x", "allowed_origins": ' + "[" * 65 + "]" * 65 + "}"
    assert_error(api.post(f"/orgs/{org}/projects", data=deep, content_type="application/json"), 400)
    shallow = '{"slug": "x", "allowed_origins": [[["a"]]]}'  # well-formed JSON the schema refuses
    assert api.post(f"/orgs/{org}/projects", data=shallow, content_type="application/json").status_code == 422


def test_an_admin_body_over_the_limit_is_a_413_in_the_one_shape(api, org):
    body = json.dumps({"slug": "x", "display_name": "a" * MAX_ADMIN_BYTES})
    response = api.post(f"/orgs/{org}/projects", data=body, content_type="application/json")
    assert_error(response, 413)


def test_a_deeply_nested_answer_is_relayed_and_metered_as_no_usage(client, proj, api, raw, caplog):
    deep = b'{"model": "m", "usage": ' + b"[" * DEEP + b"]" * DEEP + b"}"
    sse = b"data: " + deep + b"\n\ndata: [DONE]\n\n"
    json_up = raw(
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(deep), deep)
    )
    sse_up = raw(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n" + sse)
    put_provider(api, proj, "openai", template="openai", api_key=FAKE_KEY, base_url=json_up.url)
    put_provider(api, proj, "mistral", template="mistral", api_key=FAKE_KEY, base_url=sse_up.url)
    token = api.post(f"{proj.path}/tokens", json={"name": "t", "environment": "development", "expires_in": 600}).json[
        "token"
    ]
    caplog.set_level("ERROR")
    for name, expected in (("openai", deep), ("mistral", sse)):
        response = client.post(f"/proxy/{name}/v1/chat/completions", headers=bearer(token), json={})
        assert response.status_code == 200
        assert response.get_data() == expected
    assert not [r for r in caplog.records if r.levelname == "ERROR"]


@pytest.mark.parametrize("depth", [900, DEEP])  # parsed but deep enough to recurse; past the parser's limit
def test_the_usage_meters_read_deeply_nested_answers_as_no_usage(depth):
    deep = b"[" * depth + b'{"model": "m", "usage": {"prompt_tokens": 1}}' + b"]" * depth
    for template in ("openai", "anthropic", "gemini"):
        plain = UsageMeter.for_template(template, "application/json")
        plain.feed(deep)
        stream = UsageMeter.for_template(template, "text/event-stream")
        stream.feed(b"data: " + deep + b"\n\n")
        for meter in (plain, stream):
            found = meter.result()  # never raises
            assert found is None or found["prompt_tokens"] in (1, None)


# --------------------------------------------------------------------------- 5. Connection-named


def test_headers_the_upstream_names_in_connection_do_not_reach_the_client(client, proj, api, raw):
    up = raw(
        b"HTTP/1.1 200 OK\r\nConnection: close, X-Hop-Secret\r\nX-Hop-Secret: hop-value\r\n"
        b"X-Kept: kept\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
    )
    put_provider(api, proj, "openai", template="openai", api_key=FAKE_KEY, base_url=up.url)
    token = api.post(f"{proj.path}/tokens", json={"name": "t", "environment": "development", "expires_in": 600}).json[
        "token"
    ]
    response = client.get("/proxy/openai/v1/models", headers=bearer(token))
    assert response.status_code == 200
    assert response.headers.get("X-Kept") == "kept"
    assert "X-Hop-Secret" not in response.headers
    assert b"hop-value" not in b"".join(f"{k}: {v}".encode() for k, v in response.headers.items())


# --------------------------------------------------------------------------- 7. body limit


def test_a_declared_body_over_the_limit_is_a_413_at_once_and_nothing_is_sent(
    make_app, provider, project_token, upstream
):
    app = make_app(JETPERO_MAX_REQUEST_BYTES=1000)
    live = LiveServer(app)
    try:
        host, port = live.url.rsplit("/", 1)[1].split(":")
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            sock.sendall(
                b"POST /proxy/openai/v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
                b"Authorization: Bearer " + project_token.encode() + b"\r\n"
                b"Content-Type: application/json\r\nContent-Length: 10737418240\r\n\r\n{"
            )  # 10 GiB declared, 1 byte sent: the answer must come without the rest
            sock.settimeout(5)
            head = _answer(sock)
        assert head.startswith(b"HTTP/1.1 413"), head[:200]
        assert b"JETPERO_MAX_REQUEST_BYTES" in head
        assert upstream.requests == []
    finally:
        live.stop()


def test_a_body_at_the_limit_is_forwarded(make_app, provider, project_token, upstream):
    client = make_app(JETPERO_MAX_REQUEST_BYTES=100_000).test_client()
    response = client.post("/proxy/openai/v1/x", headers=bearer(project_token), data=b"a" * 100_000)
    assert response.status_code == 200
    assert len(upstream.requests[-1].body) == 100_000


def test_a_chunked_body_growing_past_the_limit_is_a_413_and_the_providers_request_aborted(
    make_app, provider, project_token, upstream
):
    live = LiveServer(make_app(JETPERO_MAX_REQUEST_BYTES=200_000))
    try:
        host, port = live.url.rsplit("/", 1)[1].split(":")
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            sock.sendall(
                b"POST /proxy/openai/v1/x HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
                + project_token.encode()
                + b"\r\nContent-Type: application/octet-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
            )
            piece = b"%x\r\n%s\r\n" % (50_000, b"b" * 50_000)
            try:
                for _ in range(8):  # 400,000 bytes: twice the limit
                    sock.sendall(piece)
                    time.sleep(0.02)
            except OSError:
                pass  # JetPero answered and stopped reading
            head = sock.recv(65536)
        assert head.startswith(b"HTTP/1.1 413"), head[:200]
        time.sleep(0.3)
        assert all(len(seen.body) <= 200_000 for seen in upstream.requests)
    finally:
        live.stop()


def _answer(sock) -> bytes:
    """The whole answer on a connection the server closes (`Connection: close`): head and body
    may come in separate segments."""
    answer = b""
    while chunk := sock.recv(65536):
        answer += chunk
    return answer
