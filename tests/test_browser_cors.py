"""A browser calls the proxy with `fetch`: from an allowed origin (preflight, then an SSE answer read
as it arrives), and from any other origin the browser itself refuses the answer."""

from __future__ import annotations

import pytest

from tests.helpers import FAKE_KEY, create_project, issue_token, put_provider

EVENTS, INTERVAL = 4, 0.5  # the fake upstream holds each event back INTERVAL seconds

# Reads the body chunk by chunk through its ReadableStream, noting when each SSE event arrived.
READ_STREAM = """async ([url, token]) => {
  const started = performance.now();
  const response = await fetch(url, {headers: {Authorization: `Bearer ${token}`, Accept: "text/event-stream"}});
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  const events = [];
  let buffer = "";
  for (;;) {
    const {value, done} = await reader.read();
    if (done) break;
    buffer += value;
    let end;
    while ((end = buffer.indexOf("\\n\\n")) >= 0) {
      events.push({data: buffer.slice(0, end), at: performance.now() - started});
      buffer = buffer.slice(end + 2);
    }
  }
  return {status: response.status, type: response.headers.get("content-type"), events,
          ended: performance.now() - started};
}"""

REFUSED = """async ([url, token]) => {
  try {
    const response = await fetch(url, {headers: {Authorization: `Bearer ${token}`}});
    return `read: ${response.status}`;
  } catch (error) {
    return `refused: ${error.name}`;
  }
}"""


@pytest.fixture
def browser_project(api, upstream, origin_server):
    """(allowed origin page, project token) for a project allowing only that page's origin."""
    allowed = origin_server()
    project = create_project(api, origins=(allowed.url,))
    put_provider(api, project, "openai", template="openai", api_key=FAKE_KEY, base_url=upstream.url)
    return allowed, issue_token(api, project)["token"]


def test_allowed_origin_reads_the_stream_as_it_arrives(page, browser_live, browser_project, upstream):
    allowed, token = browser_project
    page.goto(allowed.url)
    url = f"{browser_live.url}/proxy/openai/drip?count={EVENTS}&interval={INTERVAL}"
    result = page.evaluate(READ_STREAM, [url, token])

    assert result["status"] == 200 and result["type"].startswith("text/event-stream")
    assert [event["data"] for event in result["events"]] == [f"data: {n}" for n in range(EVENTS)]
    held_back = (EVENTS - 1) * INTERVAL * 1000  # ms the upstream holds the later events back
    arrivals = [event["at"] for event in result["events"]]
    assert arrivals == sorted(arrivals)
    assert result["ended"] - arrivals[0] > held_back / 2  # the first event was read while the rest were held
    calls = [seen for seen in browser_live.seen if seen.path == "/proxy/openai/drip"]
    assert [seen.preflight for seen in calls] == [True, False]  # Authorization: the browser asked first
    assert {seen.origin for seen in calls} == {allowed.url}
    assert len(upstream.requests) == 1 and upstream.requests[0].header("authorization") == f"Bearer {FAKE_KEY}"


def test_another_origin_is_refused_by_the_browser(page, browser_live, browser_project, origin_server, upstream):
    _, token = browser_project
    other = origin_server()
    page.goto(other.url)
    result = page.evaluate(REFUSED, [f"{browser_live.url}/proxy/openai/drip?count=1", token])

    assert result == "refused: TypeError"  # the page never sees the answer
    calls = [seen for seen in browser_live.seen if seen.path == "/proxy/openai/drip" and seen.origin == other.url]
    assert [seen.preflight for seen in calls] == [True, False]  # it was asked and answered 403
    assert upstream.requests == []  # and nothing went upstream
