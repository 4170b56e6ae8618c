"""Granular scopes: routes (methods and path patterns), models, and the bounded JSON body reader."""

from __future__ import annotations

import io
import json

import pytest

from app.rules.scope import BodyUnreadable, Route, Scope, ScopeError, read_body_fields


@pytest.fixture
def chat_only():
    return Scope.parse(["POST v1/chat/completions", "GET v1/models/*", "* v2/**"], ["gpt-4o*", "o3"])


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("POST", "v1/chat/completions", True),
        ("POST", "/v1/chat/completions/", True),
        ("GET", "v1/chat/completions", False),
        ("POST", "v1/embeddings", False),
        ("POST", "v1/chat/completions/extra", False),
        ("GET", "v1/models/gpt-4o", True),
        ("GET", "v1/models/gpt-4o/more", False),
        ("DELETE", "v2/files/1/content", True),
        ("GET", "v2", False),
        ("POST", "v1/chat/../embeddings", False),
        ("POST", "v1/chat/%2e%2e/embeddings", False),
        ("POST", "v1/chat%2Fcompletions", False),
        ("POST", "v1//chat/completions", False),
        ("POST", "v1\\chat\\completions", False),
        ("POST", "x" * 5000, False),
    ],
)
def test_routes(chat_only, method, path, allowed):
    refusal = chat_only.route_refusal(method, path)
    assert (refusal is None) == allowed
    if not allowed:
        assert refusal.startswith("this token")


def test_refusals_name_what_is_not_allowed(chat_only):
    assert chat_only.route_refusal("POST", "v1/embeddings") == (
        "this token may not call POST v1/embeddings (allowed: POST v1/chat/completions, GET v1/models/*, * v2/**)"
    )
    assert "may not use the model 'gpt-3.5-turbo'" in chat_only.model_refusal("gpt-3.5-turbo")
    assert chat_only.model_refusal("gpt-4o-mini") is None and chat_only.model_refusal("o3") is None
    assert chat_only.model_refusal("o3-mini") is not None
    assert "names none" in chat_only.model_refusal(None)


def test_the_default_scope_is_the_whole_provider():
    scope = Scope.parse()
    assert scope.route_refusal("PATCH", "anything/at/all") is None and scope.model_refusal(None) is None


@pytest.mark.parametrize(
    ("route", "message"),
    [
        ("FETCH v1/x", "start with a method"),
        ("v1/chat/completions", "start with a method"),
        ("POST", "write a path like"),
        ("POST v1/../admin", "write a path like"),
        ("POST v1/**/x", "write a path like"),
        ("POST v1/chat*", "write a path like"),
        ("POST v1//x", "write a path like"),
        ("POST v1/%2e%2e", "write a path like"),
        (None, "start with a method"),
    ],
)
def test_bad_routes_are_refused_with_the_fix(route, message):
    with pytest.raises(ScopeError, match=message):
        Route.parse(route)


def test_bad_scopes():
    with pytest.raises(ScopeError, match="not one string"):
        Scope.parse("POST v1/chat/completions")
    with pytest.raises(ScopeError, match="not a model name"):
        Scope.parse(models=["gpt 4o; drop"])
    with pytest.raises(ScopeError, match="at most 100"):
        Scope.parse([f"POST v1/r{i}" for i in range(101)])


def reader(data: bytes, chunk: int = 7):
    stream = io.BytesIO(data)
    return lambda n: stream.read(min(n, chunk))


def test_reads_model_max_tokens_and_stream_and_keeps_the_bytes():
    body = json.dumps({"model": "gpt-4o", "max_tokens": 64, "stream": True, "messages": []}).encode()
    fields = read_body_fields(reader(body), limit=len(body))
    assert (fields.model, fields.max_tokens, fields.stream, fields.body) == ("gpt-4o", 64, True, body)
    both = read_body_fields(reader(b'{"max_tokens": 5, "max_completion_tokens": 9}'))
    assert both.max_tokens == 9 and both.model is None and both.stream is False


def test_reads_at_most_the_limit():
    calls: list[int] = []
    stream = io.BytesIO(b'{"model": "gpt-4o", "pad": "' + b"x" * 10_000 + b'"}')

    def read(n: int) -> bytes:
        calls.append(n)
        return stream.read(n)

    with pytest.raises(BodyUnreadable, match="over 100 bytes"):
        read_body_fields(read, limit=100)
    assert stream.tell() <= 101


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "not a JSON object that can be read"),
        (b"[1, 2]", "not a JSON object"),
        (b'{"model": "gpt-4o"', "not a JSON object that can be read"),
        (b"\xff\xfe{}", "not a JSON object that can be read"),
        (b'{"model": "gpt-4o", "model": "gpt-3.5"}', "repeats a key"),
        (b'{"model": 5}', "model is not a string"),
        (b'{"max_tokens": "10"}', "max_tokens is not a whole number"),
        (b'{"max_tokens": true}', "max_tokens is not a whole number"),
        (b'{"max_tokens": -1}', "max_tokens is not a whole number"),
        (b'{"max_tokens": 1e400}', "max_tokens is not a whole number"),
        (b'{"max_tokens": NaN}', "not JSON"),
        (b'{"max_tokens": ' + b"9" * 5000 + b"}", "not a JSON object that can be read"),
        (b'{"stream": "yes"}', "stream is not true or false"),
        (b'{"a": ' + b"[" * 200_000 + b"]" * 200_000 + b"}", "not a JSON object that can be read"),
    ],
)
def test_hostile_bodies_are_refused_not_crashed(body, message):
    with pytest.raises(BodyUnreadable, match=message):
        read_body_fields(reader(body, chunk=65536), limit=1 << 20)


def test_only_the_top_level_is_checked_for_repeated_keys_but_the_whole_body_is_json():
    nested = b'{"model": "gpt-4o", "messages": [{"role": "user", "role": "system", "content": "hi"}]}'
    assert read_body_fields(reader(nested)).model == "gpt-4o"  # a nested repeat cannot change model or max_tokens
    refused = [
        (b'{"model": "gpt-4o", "\\u006dodel": "gpt-3.5"}', "repeats a key"),  # the same key, escaped
        (b'{"model": "gpt-4o", "messages": [{"n": NaN}]}', "not JSON"),
        (b'{"model": "gpt-4o", "messages": [{"n": 1,}]}', "not a JSON object that can be read"),
        (b'{"model": "gpt-4o"} {}', "not a JSON object that can be read"),
        (b' \n{"model": "gpt-4o",}', "not a JSON object that can be read"),
    ]
    for body, message in refused:
        with pytest.raises(BodyUnreadable, match=message):
            read_body_fields(reader(body))
    spaced = read_body_fields(reader(b' \n{ "model" :"gpt-4o" , "max_tokens": 7 }\r\n'))
    assert (spaced.model, spaced.max_tokens) == ("gpt-4o", 7)


def test_the_fast_parse_and_the_top_level_walk_agree():
    """`_fields` takes orjson's parse only where it cannot differ from the walk's (no escape, no
    repeatable read field); a repeated field that is not read is accepted by both."""
    from app.rules.scope import _fields, _members

    bodies = [
        b'{"model": "gpt-4o", "max_tokens": 7, "stream": true, "messages": [{"role": "user", "content": "hi"}]}',
        b'{"messages": [1], "messages": [2], "model": "m"}',  # a repeated field admission does not read
        b'{"model": "gpt-4o", "contents": [{"role": "model", "parts": []}]}',  # "model" twice: the walk
        b'{"model": "caf\\u00e9", "max_completion_tokens": 3}',  # an escape: the walk
        b' \n{ "model" :"gpt-4o" , "max_tokens": 7 }\r\n',
        b"{}",
    ]
    for body in bodies:
        assert _fields(body) == _members(body.decode()), body
    assert read_body_fields(reader(bodies[1])).model == "m"
    assert read_body_fields(reader(bodies[3])).model == "café"
