"""The proxy's forwarding safety: the host, the path, headers both ways, key injection, TLS, failures.

Every "nothing went elsewhere" check uses a real listening socket that counts connections.
"""

from __future__ import annotations

import base64
import http.client
import socket
import time
from urllib.parse import parse_qs, urlsplit

import pytest

from app.proxy import forward
from tests.helpers import FAKE_KEY, Project, assert_uniform_401, bearer, issue_token, put_provider
from tests.servers import Listener, RawUpstream, TlsUpstream
from tests.upstream import SECRET_HEADERS, FakeUpstream, mask_key
from tools.procs import free_port


@pytest.fixture
def proj(project) -> Project:
    return Project(*project.split("/"))


@pytest.fixture
def evil():
    listener = Listener()
    yield listener
    listener.stop()


@pytest.fixture
def based(api, proj, upstream):
    """A custom provider `based` whose base URL has a path: `<upstream>/base`."""
    put_provider(api, proj, "based", template="custom", api_key=FAKE_KEY, base_url=f"{upstream.url}/base")
    return "based"


def _forwarded_only_under(upstream: FakeUpstream, prefix: str) -> None:
    for seen in upstream.requests:
        assert seen.path.startswith(prefix), seen.path
        assert not any(ch in seen.path for ch in "\r\n\x00\\ "), seen.path


# --------------------------------------------------------------------------- forwarding


@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"])
def test_any_method_is_forwarded_with_the_real_key(client, provider, project_token, upstream, method):
    response = client.open(
        "/proxy/openai/v1/things/42?a=1&b=two", method=method, headers=bearer(project_token), data=b"{}"
    )
    assert response.status_code == 200
    (seen,) = upstream.requests
    assert seen.method == method
    assert seen.path == "/v1/things/42?a=1&b=two"
    assert seen.header_all("authorization") == [f"Bearer {FAKE_KEY}"]
    if method != "HEAD":
        assert response.json["method"] == method


def test_upstream_status_and_body_pass_through(client, provider, project_token, upstream):
    for status in (201, 404, 429, 500, 503):
        response = client.get(f"/proxy/openai/status/{status}", headers=bearer(project_token))
        assert response.status_code == status
        assert response.json == {"status": status}  # the provider's body, not JetPero's error shape


# --------------------------------------------------------------------------- the host and the path


def _hostile_paths(evil_host: str) -> list[str]:
    return [
        f"https://{evil_host}/x",
        f"http://{evil_host}/x",
        f"https:/{evil_host}/x",
        f"//{evil_host}/x",
        f"///{evil_host}/x",
        f"@{evil_host}/x",
        f"x@{evil_host}/x",
        f"%2F%2F{evil_host}/x",
        f"%2f%2f{evil_host}%2fx",
        f"%40{evil_host}/x",
        f"%5C%5C{evil_host}/x",
        f"..%5C..%5C{evil_host}",
        "../../x",
        "a/../../x",
        "a/b/../../../x",
        "./x",
        "%2e%2e/x",
        "%2E%2E/%2E%2E/x",
        "%2e%2e%2fx",
        ".%2e/x",
        "%2e./x",
        "a/%2e%2e/%2e%2e/x",
        "..;/x",
        "x%00y",
        "x%00/../../y",
        "x%0d%0aHost:%20evil",
        "x%0aX-Injected:%201",
        "x%09y",
        "x%3Fkey=stolen",
        "x%23fragment",
        "x%3F%23",
        "x%252e%252e/y",
    ]


def test_client_never_picks_the_host_or_escapes_the_base(client, based, project_token, upstream, evil):
    evil_host = f"127.0.0.1:{evil.port}"
    outcomes = {}
    for path in _hostile_paths(evil_host):
        response = client.get(f"/proxy/based/{path}", headers=bearer(project_token))
        outcomes[path] = response.status_code
        if response.status_code == 200:
            seen = upstream.requests[-1]
            assert seen.header("host") == urlsplit(upstream.url).netloc
            assert "key=stolen" not in urlsplit(seen.path).query
        else:
            assert response.status_code in (400, 404, 308), (path, response.status_code)
        _forwarded_only_under(upstream, "/base/")
    assert evil.connections == 0
    # Dot segments and control characters are refused outright.
    for path in ("../../x", "%2e%2e/x", "a/%2e%2e/%2e%2e/x", "x%00y", "x%0d%0aHost:%20evil", "x%0aX-Injected:%201"):
        assert outcomes[path] in (400, 404), path
    assert any(status == 200 for status in outcomes.values())  # the rest really reached the base


def test_the_base_url_itself(client, based, project_token, upstream):
    response = client.get("/proxy/based/?alt=json", headers=bearer(project_token))
    assert response.status_code == 200
    assert upstream.requests[-1].path == "/base/?alt=json"


def test_raw_request_targets_on_a_real_server(live, based, project_token, upstream, evil):
    """The same over a real socket, request targets exactly as an attacker writes them."""
    port = urlsplit(live.url).port
    for target in (
        "/proxy/based/../../x",
        "/proxy/based/..%2f..%2fx",
        f"/proxy/based/http://127.0.0.1:{evil.port}/x",
        f"/proxy/based//127.0.0.1:{evil.port}/x",
        "/proxy/based/%2e%2e/%2e%2e/admin",
        "/proxy/based/x%0d%0aX-Injected:%201",
    ):
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            request = f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {project_token}\r\nConnection: close\r\n\r\n"
            sock.sendall(request.encode())
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
        status = int(answer.split(b" ", 2)[1])
        assert status in (200, 308, 400, 404), (target, answer[:200])
        _forwarded_only_under(upstream, "/base/")
    assert evil.connections == 0


def test_redirects_are_passed_back_never_followed(client, provider, project_token, upstream, evil):
    target = f"{evil.url}/steal"
    response = client.post(
        f"/proxy/openai/v1/redirect?to={target}", headers=bearer(project_token), json={"secret": "body"}
    )
    assert response.status_code == 302
    assert response.headers["Location"] == target
    assert len(upstream.requests) == 1
    assert evil.connections == 0


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "0x7f000001", "2130706433", "[::ffff:127.0.0.1]"])
def test_private_upstream_refused_at_connect_time(api, client, proj, upstream, make_app, host):
    """Stored while private upstreams were allowed; a worker that disallows them refuses at connect."""
    port = urlsplit(upstream.url).port
    put_provider(api, proj, "local", template="custom", api_key=FAKE_KEY, base_url=f"http://{host}:{port}")
    token = issue_token(api, proj)["token"]
    assert client.get("/proxy/local/v1/x", headers=bearer(token)).status_code == 200  # control: reachable
    upstream.clear()

    strict = make_app(JETPERO_ALLOW_PRIVATE_UPSTREAMS="false").test_client()
    response = strict.get("/proxy/local/v1/x", headers=bearer(token))
    assert response.status_code == 403  # this JetPero's refusal, not the provider's failure
    assert FAKE_KEY not in response.get_data(as_text=True)
    assert upstream.requests == []
    # And it cannot be stored there either.
    assert (
        strict.put(
            f"/api/v1{proj.path}/providers/local2",
            json={"template": "custom", "api_key": FAKE_KEY, "base_url": f"http://{host}:{port}"},
            headers={"Authorization": f"Bearer {api.token}"},
        ).status_code
        == 422
    )


# --------------------------------------------------------------------------- headers


@pytest.mark.parametrize("transport", ["socket", "test-client"])
def test_client_credentials_and_hop_by_hop_headers_never_reach_upstream(
    client, live, provider, project_token, upstream, transport
):
    headers = {
        "Authorization": f"Bearer {project_token}",
        "x-api-key": "sk-client-own-key-1",
        "x-goog-api-key": "client-goog-key",
        "api-key": "client-azure-key",
        "X-JetPero-Token": project_token,
        "Cookie": "session=browser-session",
        "Cookie2": "$Version=1",
        "Proxy-Authorization": "Basic cHJveHk6cHc=",
        "OpenAI-Organization": "org-client",
        "OpenAI-Project": "proj-client",
        "X-Forwarded-For": "6.6.6.6",
        "X-Forwarded-Host": "evil.example",
        "X-Forwarded-Proto": "http",
        "Forwarded": "for=6.6.6.6;host=evil.example",
        "X-Real-IP": "6.6.6.6",
        "Host": "evil.example",
        "X-HTTP-Method-Override": "DELETE",
        "X-HTTP-Method": "DELETE",
        "X-Method-Override": "DELETE",
        "Connection": "keep-alive, X-Named-By-Connection",
        "X-Named-By-Connection": "must-go",
        "Keep-Alive": "timeout=5",
        "Proxy-Connection": "keep-alive",
        "TE": "trailers",
        "Trailer": "X-Checksum",
        "Upgrade": "websocket",
        "Origin": "https://app.example.com",
        "X-Custom-Ok": "kept",
        "Content-Type": "application/json",
    }
    body = b'{"model": "m", "messages": []}'
    if transport == "socket":  # every header exactly as sent, through a real server
        connection = http.client.HTTPConnection(urlsplit(live.url).netloc, timeout=10)
        connection.putrequest("POST", "/proxy/openai/v1/chat/completions", skip_host=True, skip_accept_encoding=True)
        for name, value in {**headers, "Content-Length": str(len(body))}.items():
            connection.putheader(name, value)
        connection.endheaders(body)
        status = connection.getresponse().status
        connection.close()
    else:
        client.set_cookie("session", "browser-session", domain="localhost")
        status = client.post("/proxy/openai/v1/chat/completions", headers=headers, data=body).status_code
    assert status == 200
    (seen,) = upstream.requests
    received = {name.lower() for name, _ in seen.headers}
    for name in headers:
        if name.lower() not in ("x-custom-ok", "content-type", "authorization", "host"):
            assert name.lower() not in received, name
    assert not any(name.startswith(("x-forwarded-", "x-jetpero-")) for name in received)
    assert seen.header_all("authorization") == [f"Bearer {FAKE_KEY}"]
    assert seen.header_all("host") == [urlsplit(upstream.url).netloc]
    assert seen.method == "POST"
    assert seen.header("x-custom-ok") == "kept" and seen.header("content-type") == "application/json"
    everything = (seen.path + repr(seen.headers)).encode() + seen.body
    assert project_token.encode() not in everything


def test_header_policy_holds_past_the_remembered_names(monkeypatch):
    """Outgoing header names are remembered per environ key up to a bound (the names are the
    client's to choose); past it they are worked out each time, by the same policy."""
    environ = {
        "CONTENT_TYPE": "application/json",
        "HTTP_X_CUSTOM_OK": "kept",
        "HTTP_COOKIE": "session=browser-session",
        "HTTP_X_FORWARDED_FOR": "6.6.6.6",
        "HTTP_AUTHORIZATION": "Bearer a-token",
        "HTTP_CONNECTION": "keep-alive, X-Named",
        "HTTP_X_NAMED": "must-go",
        "HTTP_X_CUSTOM_KEY": "client-chosen",
        "REQUEST_METHOD": "POST",
    }
    expected = {"Content-Type": "application/json", "X-Custom-Ok": "kept"}
    assert forward.request_headers(environ, extra_drop="x-custom-key") == expected
    monkeypatch.setattr(forward, "_names", {})
    monkeypatch.setattr(forward, "_NAMES_MAX", 0)
    assert forward.request_headers(environ, extra_drop="x-custom-key") == expected
    assert forward._names == {}


def test_set_cookie_and_account_headers_never_returned(client, provider, project_token, upstream):
    response = client.get("/proxy/openai/v1/set-cookie", headers=bearer(project_token))
    assert response.status_code == 200 and response.json == {"cookies": True}
    names = {name.lower() for name in response.headers.keys()}
    assert "set-cookie" not in names
    for name, value in SECRET_HEADERS.items():
        assert name not in names
        assert value not in str(response.headers)


def _assert_scrubbed(response, key: str, token: str) -> None:
    raw = response.get_data()
    assert key.encode() not in raw
    assert mask_key(key).encode() not in raw
    assert key[:12].encode() not in raw and key[-12:].encode() not in raw
    assert b"****" not in raw
    assert token.encode() not in raw


def test_upstream_error_bodies_echoing_the_key_are_scrubbed(api, client, proj, provider, project_token, upstream):
    response = client.get("/proxy/openai/v1/echo-key", headers=bearer(project_token))
    assert response.status_code == 401
    assert "Incorrect API key provided" in response.json["error"]["message"]  # the provider's error, scrubbed
    _assert_scrubbed(response, FAKE_KEY, project_token)
    assert upstream.requests[-1].header("authorization") == f"Bearer {FAKE_KEY}"  # it really was echoed

    put_provider(
        api,
        proj,
        "hdr",
        template="custom",
        api_key=FAKE_KEY,
        base_url=upstream.url,
        auth_type="header",
        auth_name="x-api-key",
    )
    put_provider(
        api, proj, "qry", template="custom", api_key=FAKE_KEY, base_url=upstream.url, auth_type="query", auth_name="key"
    )
    for name in ("hdr", "qry"):
        response = client.get(f"/proxy/{name}/v1/echo-key", headers=bearer(project_token))
        assert response.status_code == 401
        _assert_scrubbed(response, FAKE_KEY, project_token)


# --------------------------------------------------------------------------- key injection


def test_query_parameter_injection(api, client, proj, project_token, upstream):
    put_provider(
        api, proj, "gem", template="custom", api_key=FAKE_KEY, base_url=upstream.url, auth_type="query", auth_name="key"
    )
    response = client.get(
        "/proxy/gem/v1/models?key=client-chosen&alt=json&k%65y=encoded-client-chosen&key&KEYS=1",
        headers=bearer(project_token),
    )
    assert response.status_code == 200
    seen = upstream.requests[-1]
    query = parse_qs(urlsplit(seen.path).query, keep_blank_values=True)
    assert query["key"] == [FAKE_KEY]
    assert query["alt"] == ["json"] and query["KEYS"] == ["1"]
    assert "client-chosen" not in seen.path
    assert seen.header("authorization") is None


def test_header_injection(api, client, proj, project_token, upstream):
    put_provider(
        api,
        proj,
        "hdr",
        template="custom",
        api_key=FAKE_KEY,
        base_url=upstream.url,
        auth_type="header",
        auth_name="X-Custom-Key",
    )
    response = client.get(
        "/proxy/hdr/v1/models",
        headers={**bearer(project_token), "X-Custom-Key": "client-chosen", "x-custom-key": "again"},
    )
    assert response.status_code == 200
    seen = upstream.requests[-1]
    assert seen.header_all("x-custom-key") == [FAKE_KEY]
    assert seen.header("authorization") is None


@pytest.mark.parametrize(
    "key,pair", [("sk-fake-user:sk-fake-pass", "sk-fake-user:sk-fake-pass"), (FAKE_KEY, f"{FAKE_KEY}:")]
)
def test_basic_injection(api, client, proj, project_token, upstream, key, pair):
    put_provider(api, proj, "bas", template="custom", api_key=key, base_url=upstream.url, auth_type="basic")
    response = client.get(
        "/proxy/bas/v1/models",
        headers={"X-JetPero-Token": project_token, "Authorization": "Basic Y2xpZW50OmNsaWVudA=="},
    )
    assert response.status_code == 200
    seen = upstream.requests[-1]
    assert seen.header_all("authorization") == ["Basic " + base64.b64encode(pair.encode()).decode()]


@pytest.mark.parametrize(
    "template,header,value",
    [
        ("openai", "authorization", f"Bearer {FAKE_KEY}"),
        ("anthropic", "x-api-key", FAKE_KEY),
        ("gemini", "x-goog-api-key", FAKE_KEY),
        ("mistral", "authorization", f"Bearer {FAKE_KEY}"),
    ],
)
def test_templates_inject_their_way(api, client, proj, project_token, upstream, template, header, value):
    put_provider(api, proj, template, template=template, api_key=FAKE_KEY, base_url=upstream.url)
    response = client.post(f"/proxy/{template}/v1/x", headers={"x-goog-api-key": project_token}, json={})
    assert response.status_code == 200
    seen = upstream.requests[-1]
    assert seen.header_all(header) == [value]
    for other in {"authorization", "x-api-key", "x-goog-api-key"} - {header}:
        assert seen.header(other) is None


def test_proxy_environment_variables_are_ignored(
    monkeypatch, client, provider, project_token, upstream, evil, make_app
):
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.setenv(name, evil.url)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    fresh = make_app().test_client()  # built with the proxy variables set
    for c in (client, fresh):
        assert c.post("/proxy/openai/v1/chat/completions", headers=bearer(project_token), json={}).status_code == 200
    assert len(upstream.requests) == 2
    assert evil.connections == 0


def test_tls_is_verified(api, client, proj, project_token, make_app, tmp_path):
    tls = TlsUpstream(tmp_path)
    try:
        put_provider(api, proj, "tls", template="custom", api_key=FAKE_KEY, base_url=tls.url)
        response = client.get("/proxy/tls/v1/models", headers=bearer(project_token))
        assert response.status_code == 502
        assert tls.requests == 0
        # Control: the same upstream, trusted through JETPERO_UPSTREAM_CA_BUNDLE, works.
        trusting = make_app(JETPERO_UPSTREAM_CA_BUNDLE=str(tls.cert)).test_client()
        response = trusting.get("/proxy/tls/v1/models", headers=bearer(project_token))
        assert response.status_code == 200 and response.json == {"tls": True}
        assert tls.requests == 1
    finally:
        tls.stop()


# --------------------------------------------------------------------------- fail closed


def test_provider_not_configured_is_404(client, provider, project_token, upstream):
    for name in ("gemini", "anthropic", "..", "%2e%2e", "openai%00", "OpenAI", "openai.", "a" * 300):
        response = client.get(f"/proxy/{name}/v1/models", headers=bearer(project_token))
        assert response.status_code in (400, 404), (name, response.status_code)
    assert client.get("/proxy/gemini/v1/models", headers=bearer(project_token)).status_code == 404
    assert upstream.requests == []


def test_provider_outside_scope_is_403(api, client, proj, provider, upstream):
    put_provider(api, proj, "anthropic", template="anthropic", api_key=FAKE_KEY, base_url=upstream.url)
    token = issue_token(api, proj, scope=["openai"])["token"]
    response = client.post("/proxy/anthropic/v1/messages", headers=bearer(token), json={})
    assert response.status_code == 403
    assert upstream.requests == []
    assert client.post("/proxy/openai/v1/chat/completions", headers=bearer(token), json={}).status_code == 200


def test_bad_token_checked_before_provider(client, provider, upstream):
    assert_uniform_401(client.get("/proxy/nope/v1/models", headers=bearer("x.y.z")))
    assert upstream.requests == []


def test_upstream_unreachable_is_502(api, client, proj, project_token):
    put_provider(api, proj, "closed", template="custom", api_key=FAKE_KEY, base_url=f"http://127.0.0.1:{free_port()}")
    response = client.get("/proxy/closed/v1/models", headers=bearer(project_token))
    assert response.status_code == 502
    assert FAKE_KEY not in response.get_data(as_text=True)


def test_upstream_slower_than_read_timeout_is_504(client, provider, project_token, upstream, make_app):
    quick = make_app(JETPERO_UPSTREAM_READ_TIMEOUT="0.5").test_client()
    started = time.monotonic()
    response = quick.get("/proxy/openai/v1/slow?seconds=3", headers=bearer(project_token))
    took = time.monotonic() - started
    assert response.status_code == 504
    assert response.json["message"] == "The provider did not answer in time."
    assert 0.5 <= took <= 0.5 * 1.25 + 0.5, took  # the read timeout, plus at most one sweep tick
    assert client.get("/proxy/openai/v1/slow?seconds=0.1", headers=bearer(project_token)).status_code == 200
    # The cut connection is not reused; answers within the limit pass, however long the call in all
    assert quick.get("/proxy/openai/v1/slow?seconds=0.3", headers=bearer(project_token)).status_code == 200
    assert quick.get("/proxy/openai/v1/drip?count=4&interval=0.3", headers=bearer(project_token)).status_code == 200


@pytest.mark.parametrize(
    "reply,close,status",
    [
        (b'HTTP/1.1 500 Internal Server Error\r\nContent-Length: 1000\r\n\r\n{"error": ', False, 504),
        (b'HTTP/1.1 401 Unauthorized\r\nContent-Length: 1000\r\n\r\n{"error": ', True, 502),
        (b"HTTP/1.1 400 Bad Request\r\nContent-Encoding: gzip\r\nContent-Length: 9\r\n\r\nnot-gzip!", True, 502),
    ],
    ids=["stalled", "truncated", "undecodable"],
)
def test_broken_upstream_error_bodies_fail_as_gateway_errors(api, proj, project_token, make_app, reply, close, status):
    """An error answer whose body stalls, stops short or cannot be decoded: 504/502, never a 500."""
    raw = RawUpstream(reply, close=close)
    try:
        put_provider(api, proj, "raw", template="custom", api_key=FAKE_KEY, base_url=raw.url)
        quick = make_app(JETPERO_UPSTREAM_READ_TIMEOUT="0.5").test_client()
        response = quick.get("/proxy/raw/v1/models", headers=bearer(project_token))
        assert response.status_code == status, response.get_data(as_text=True)
        assert raw.requests == 1
    finally:
        raw.stop()


@pytest.mark.parametrize(
    "reply",
    [
        b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{"a":\r\n',
        b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"a":',
    ],
    ids=["chunked", "sized"],
)
def test_a_success_body_cut_short_reaches_the_client_cut_short(api, proj, project_token, live, reply):
    """The provider hangs up mid-body: the client's read fails, it is not handed a short body as whole."""
    raw = RawUpstream(reply, close=True)
    conn = http.client.HTTPConnection("127.0.0.1", int(live.url.rsplit(":", 1)[1]), timeout=10)
    try:
        put_provider(api, proj, "raw", template="custom", api_key=FAKE_KEY, base_url=raw.url)
        conn.request("GET", "/proxy/raw/v1/models", headers=bearer(project_token))
        response = conn.getresponse()
        assert response.status == 200
        with pytest.raises(http.client.IncompleteRead):
            response.read()
    finally:
        conn.close()
        raw.stop()
