"""The browser story end to end, in headless Chromium: a page on an allowed origin gets a JWT
from a local identity provider, exchanges it for an end-user token, and streams a chat
completion through the proxy (ReadableStream), then runs into its per-user limit (429). It never
holds a project token."""

from __future__ import annotations

import json

import pytest

from tests.exchange_idp import TestIdp, trust
from tests.helpers import FAKE_KEY, create_project, put_provider
from tests.upstream import OPENAI_TEXT

STORY = """async ([idp, exchange, proxy]) => {
  const login = await (await fetch(`${idp}/token?sub=alice`)).json();
  const exchanged = await fetch(exchange, {method: "POST", headers: {"Content-Type": "application/json"},
                                           body: JSON.stringify({token: login.id_token})});
  const minted = await exchanged.json();
  if (exchanged.status !== 201) return {exchange: exchanged.status, minted};
  const response = await fetch(`${proxy}/proxy/openai/v1/chat/completions`, {
    method: "POST",
    headers: {Authorization: `Bearer ${minted.token}`, "Content-Type": "application/json"},
    body: JSON.stringify({model: "gpt-test", stream: true, messages: [{role: "user", content: "hi"}]}),
  });
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let text = "", reads = 0;
  for (;;) {
    const {value, done} = await reader.read();
    if (done) break;
    reads += 1;
    text += value;
  }
  // The end user's limit (one call a minute): the next call is refused, in OpenAI's error shape.
  const again = await fetch(`${proxy}/proxy/openai/v1/chat/completions`, {
    method: "POST",
    headers: {Authorization: `Bearer ${minted.token}`, "Content-Type": "application/json"},
    body: JSON.stringify({model: "gpt-test", messages: [{role: "user", content: "again"}]}),
  });
  return {exchange: exchanged.status, user: minted.end_user, expires_in: minted.expires_in,
          status: response.status, type: response.headers.get("content-type"), reads, text,
          limited: again.status, retry_after: again.headers.get("Retry-After"), refusal: await again.json()};
}"""

BAD_TOKEN = """async ([exchange]) => {
  const answer = await fetch(exchange, {method: "POST", headers: {"Content-Type": "application/json"},
                                        body: JSON.stringify({token: "not.a.jwt"})});
  return {status: answer.status, body: await answer.json()};
}"""


@pytest.fixture
def idp():
    server = TestIdp()
    yield server
    server.stop()


@pytest.fixture
def end_user_project(app, api, upstream, origin_server, idp):
    page_origin = origin_server()
    project = create_project(api, origins=(page_origin.url,))
    put_provider(api, project, "openai", template="openai", api_key=FAKE_KEY, base_url=upstream.url)
    assert trust(app, api, project.namespace, idp, policy={"scope": ["openai"], "ttl": 600}).status_code == 200
    limits = {"end_user_limits": {"requests_per_minute": 1}}  # each end user: one call a minute
    assert api.put(f"{project.path}/policy", json=limits).status_code == 200
    return page_origin, project


def test_a_page_exchanges_an_idp_token_and_streams_a_completion(page, browser_live, end_user_project, idp, upstream):
    page_origin, project = end_user_project
    page.goto(page_origin.url)
    exchange_url = f"{browser_live.url}/exchange/{project.namespace}"
    result = page.evaluate(STORY, [idp.url, exchange_url, browser_live.url])

    assert result["exchange"] == 201, result
    assert result["user"] == "alice" and result["expires_in"] == 600
    assert result["status"] == 200 and result["type"].startswith("text/event-stream")
    assert result["reads"] >= 1 and all(json.dumps(piece) in result["text"] for piece in OPENAI_TEXT)
    assert result["text"].rstrip().endswith("data: [DONE]")
    exchanged = [seen for seen in browser_live.seen if seen.path == f"/exchange/{project.namespace}"]
    assert [seen.preflight for seen in exchanged] == [True, False]  # JSON body: the browser asked first
    assert {seen.origin for seen in exchanged} == {page_origin.url}
    assert len(upstream.requests) == 1 and upstream.requests[0].header("authorization") == f"Bearer {FAKE_KEY}"
    assert result["limited"] == 429 and int(result["retry_after"]) > 0  # the page can read it (exposed)
    assert result["refusal"]["error"]["type"] == "rate_limit_exceeded"
    assert len(upstream.requests) == 1  # the refused call never reached the provider


def test_the_page_reads_the_uniform_401_of_a_bad_idp_token(page, browser_live, end_user_project):
    page_origin, project = end_user_project
    page.goto(page_origin.url)
    result = page.evaluate(BAD_TOKEN, [f"{browser_live.url}/exchange/{project.namespace}"])
    assert result["status"] == 401 and result["body"]["message"] == "Invalid or missing token."
