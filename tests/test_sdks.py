"""The official SDKs work with only `base_url` and `api_key` changed, and the key stays server-side."""

from __future__ import annotations

import anthropic
import openai
import pytest
from google import genai
from google.genai import errors as genai_errors
from google.genai import types as genai_types

from tests.helpers import FAKE_KEY, Project, issue_token, put_provider
from tests.upstream import ANTHROPIC_REQUEST_ID, OPENAI_REQUEST_ID, OPENAI_TEXT

TEXT = "".join(OPENAI_TEXT)
MESSAGES = [{"role": "user", "content": "Say hello"}]


@pytest.fixture
def with_anthropic(api, project, upstream):
    put_provider(
        api, Project(*project.split("/")), "anthropic", template="anthropic", api_key=FAKE_KEY, base_url=upstream.url
    )


@pytest.fixture
def with_gemini(api, project, upstream):
    put_provider(
        api, Project(*project.split("/")), "gemini", template="gemini", api_key=FAKE_KEY, base_url=upstream.url
    )


def _openai(live, token) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=f"{live.url}/proxy/openai/v1",
        api_key=token,
        organization="org-client-billing",
        project="proj-client-billing",
        max_retries=0,
        timeout=10,
    )


def _anthropic(live, token) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=f"{live.url}/proxy/anthropic", api_key=token, max_retries=0, timeout=10)


def _gemini(live, token) -> genai.Client:
    options = genai_types.HttpOptions(base_url=f"{live.url}/proxy/gemini", timeout=10_000)
    return genai.Client(api_key=token, http_options=options)


def _token_never_upstream(upstream, token: str) -> None:
    signature = token.rsplit(".", 1)[1]
    for seen in upstream.requests:
        everything = (seen.path + repr(seen.headers)).encode() + seen.body
        assert token.encode() not in everything
        assert signature.encode() not in everything


def _openai_upstream(upstream, token: str) -> None:
    seen = upstream.requests[-1]
    assert seen.method == "POST" and seen.path == "/v1/chat/completions"
    assert seen.header_all("authorization") == [f"Bearer {FAKE_KEY}"]
    assert seen.header("openai-organization") is None and seen.header("openai-project") is None
    assert seen.json()["messages"] == MESSAGES
    _token_never_upstream(upstream, token)


def _anthropic_upstream(upstream, token: str) -> None:
    seen = upstream.requests[-1]
    assert seen.method == "POST" and seen.path == "/v1/messages"
    assert seen.header_all("x-api-key") == [FAKE_KEY]
    assert seen.header("authorization") is None
    assert seen.header("anthropic-version")  # the SDK's own headers pass through
    _token_never_upstream(upstream, token)


def _gemini_upstream(upstream, token: str, method: str) -> None:
    seen = upstream.requests[-1]
    assert seen.method == "POST" and seen.path.startswith(f"/v1/models/gemini-fake:{method}")
    assert seen.header_all("x-goog-api-key") == [FAKE_KEY]
    assert seen.header("authorization") is None
    assert seen.json()["contents"][0]["parts"] == [{"text": "Say hello"}]
    _token_never_upstream(upstream, token)


def test_openai_chat_completion(live, provider, project_token, upstream):
    completion = _openai(live, project_token).chat.completions.create(model="gpt-fake", messages=MESSAGES)
    assert completion.choices[0].message.content == TEXT
    assert completion._request_id == OPENAI_REQUEST_ID  # the provider's id, not JetPero's
    _openai_upstream(upstream, project_token)


def test_openai_chat_completion_stream(live, provider, project_token, upstream):
    stream = _openai(live, project_token).chat.completions.create(
        model="gpt-fake", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == TEXT
    assert chunks[-1].usage.total_tokens == 9 + len(OPENAI_TEXT)
    _openai_upstream(upstream, project_token)
    assert upstream.requests[-1].json()["stream"] is True


def test_anthropic_message(live, with_anthropic, project_token, upstream):
    message = _anthropic(live, project_token).messages.create(model="claude-fake", max_tokens=32, messages=MESSAGES)
    assert message.content[0].text == TEXT
    assert message._request_id == ANTHROPIC_REQUEST_ID
    _anthropic_upstream(upstream, project_token)


def test_anthropic_message_stream(live, with_anthropic, project_token, upstream):
    client = _anthropic(live, project_token)
    events = list(client.messages.create(model="claude-fake", max_tokens=32, messages=MESSAGES, stream=True))
    text = "".join(e.delta.text for e in events if e.type == "content_block_delta")
    assert text == TEXT and events[-1].type == "message_stop"
    with client.messages.stream(model="claude-fake", max_tokens=32, messages=MESSAGES) as stream:
        assert "".join(stream.text_stream) == TEXT
    _anthropic_upstream(upstream, project_token)


def test_anthropic_sdk_with_x_api_key(live, with_anthropic, project_token, upstream):
    """Older SDKs put the key in x-api-key: the token is read from there as well."""
    client = anthropic.Anthropic(
        base_url=f"{live.url}/proxy/anthropic",
        api_key="unused",
        default_headers={"Authorization": anthropic.Omit(), "x-api-key": project_token},
        max_retries=0,
    )
    message = client.messages.create(model="claude-fake", max_tokens=32, messages=MESSAGES)
    assert message.content[0].text == TEXT
    _anthropic_upstream(upstream, project_token)


def test_sdk_with_a_bad_token_gets_401_and_nothing_is_forwarded(live, provider, project_token, upstream):
    with pytest.raises(openai.AuthenticationError) as raised:
        _openai(live, project_token[:-4] + "AAAA").chat.completions.create(model="gpt-fake", messages=MESSAGES)
    assert raised.value.status_code == 401
    with pytest.raises(anthropic.AuthenticationError):
        _anthropic(live, "not-a-token").messages.create(model="claude-fake", max_tokens=8, messages=MESSAGES)
    assert upstream.requests == []


def test_sdk_sees_upstream_errors_scrubbed(live, provider, project_token, upstream):
    client = _openai(live, project_token)
    with pytest.raises(openai.AuthenticationError) as raised:
        client.get("/echo-key", cast_to=object)
    text = str(raised.value.body) + raised.value.response.text
    assert FAKE_KEY not in text and FAKE_KEY[-4:] + "." not in text


def test_gemini_generate_content(live, with_gemini, project_token, upstream):
    client = _gemini(live, project_token)  # kept: a genai.Client closes its connections when collected
    answer = client.models.generate_content(model="gemini-fake", contents="Say hello")
    assert answer.text == TEXT
    assert answer.usage_metadata.total_token_count == 14
    _gemini_upstream(upstream, project_token, "generateContent")


def test_gemini_generate_content_stream(live, with_gemini, project_token, upstream):
    client = _gemini(live, project_token)
    chunks = list(client.models.generate_content_stream(model="gemini-fake", contents="Say hello"))
    assert [chunk.text for chunk in chunks] == OPENAI_TEXT  # one chunk per SSE event, in order
    assert chunks[-1].candidates[0].finish_reason == genai_types.FinishReason.STOP
    _gemini_upstream(upstream, project_token, "streamGenerateContent")
    assert upstream.requests[-1].path.endswith("?alt=sse")


def test_gemini_with_a_bad_token_gets_401(live, with_gemini, project_token, upstream):
    client = _gemini(live, project_token[:-4] + "AAAA")
    with pytest.raises(genai_errors.ClientError) as raised:
        client.models.generate_content(model="gemini-fake", contents="Say hello")
    assert raised.value.code == 401
    assert upstream.requests == []


@pytest.mark.parametrize(
    ("stored_suffix", "sdk_suffix"), [("", "/v1"), ("/v1", "")], ids=["v1-in-sdk-base-url", "v1-in-stored-base-url"]
)
def test_custom_base_url_and_the_sdk_base_url_are_joined_as_is(api, live, project, upstream, stored_suffix, sdk_suffix):
    """JetPero appends the SDK's path to the stored base_url unchanged: `/v1` goes in one of them, once."""
    proj = Project(*project.split("/"))
    put_provider(api, proj, "my-llm", template="custom", api_key=FAKE_KEY, base_url=upstream.url + stored_suffix)
    token = issue_token(api, proj)["token"]
    client = openai.OpenAI(base_url=f"{live.url}/proxy/my-llm{sdk_suffix}", api_key=token, max_retries=0, timeout=10)
    assert client.chat.completions.create(model="m", messages=MESSAGES).choices[0].message.content == TEXT
    assert upstream.requests[-1].path == "/v1/chat/completions"
    assert upstream.requests[-1].header_all("authorization") == [f"Bearer {FAKE_KEY}"]
