"""Usage meters read model and token counts from answers as they pass, and never fail."""

from __future__ import annotations

import gzip
import json
import time
import zlib

import pytest

from app.rules.usage import MAX_JSON, MAX_LINE, SizedJsonMeter, UsageMeter

SSE = "text/event-stream; charset=utf-8"

OPENAI_STREAM = (
    b'data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"gpt-4o-mini-2024-07-18",'
    b'"choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}],"usage":null}\n\n'
    b'data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"gpt-4o-mini-2024-07-18",'
    b'"choices":[{"index":0,"delta":{"content":"Hi"},"finish_reason":"stop"}],"usage":null}\n\n'
    b'data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"gpt-4o-mini-2024-07-18",'
    b'"choices":[],"usage":{"prompt_tokens":9,"completion_tokens":2,"total_tokens":11,'
    b'"prompt_tokens_details":{"cached_tokens":0}}}\n\n'
    b"data: [DONE]\n\n"
)

ANTHROPIC_STREAM = (
    b"event: message_start\n"
    b'data: {"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","content":[],'
    b'"model":"claude-sonnet-4-5","stop_reason":null,"stop_sequence":null,'
    b'"usage":{"input_tokens":25,"cache_creation_input_tokens":0,"output_tokens":1}}}\r\n\r\n'
    b"event: content_block_start\n"
    b'data: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}\n\n'
    b'event: ping\ndata: {"type": "ping"}\n\n'
    b"event: content_block_delta\n"
    b'data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"usage: Hello"}}\n\n'
    b'event: content_block_stop\ndata: {"type":"content_block_stop","index":0}\n\n'
    b"event: message_delta\n"
    b'data: {"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},'
    b'"usage":{"output_tokens":15}}\n\n'
    b'event: message_stop\ndata: {"type":"message_stop"}\n\n'
)

GEMINI_STREAM = (
    b'data: {"candidates": [{"content": {"parts": [{"text": "Hi"}],"role": "model"},"index": 0}],'
    b'"usageMetadata": {"promptTokenCount": 4,"totalTokenCount": 4},"modelVersion": "gemini-2.0-flash"}\r\n\r\n'
    b'data: {"candidates": [{"content": {"parts": [{"text": " there"}],"role": "model"},'
    b'"finishReason": "STOP","index": 0}],"usageMetadata": {"promptTokenCount": 4,"candidatesTokenCount": 8,'
    b'"totalTokenCount": 12},"modelVersion": "gemini-2.0-flash"}\r\n\r\n'
)


def meter_of(
    template: str, content_type: str, body: bytes, size: int | None = None, *, sized: bool = False
) -> dict | None:
    meter = UsageMeter.for_template(template, content_type, None, len(body) if sized else None)
    size = size or len(body) or 1
    for start in range(0, len(body), size):
        meter.feed(body[start : start + size])
    return meter.result()


@pytest.mark.parametrize("size", [None, 1, 7, 100])
@pytest.mark.parametrize(
    "template, body, expected",
    [
        ("openai", OPENAI_STREAM, ("gpt-4o-mini-2024-07-18", 9, 2, 11)),
        ("anthropic", ANTHROPIC_STREAM, ("claude-sonnet-4-5", 25, 15, 40)),
        ("gemini", GEMINI_STREAM, ("gemini-2.0-flash", 4, 8, 12)),
    ],
)
def test_streams_are_metered_whatever_the_chunking(template, body, expected, size):
    result = meter_of(template, SSE, body, size)
    assert (result["model"], result["prompt_tokens"], result["completion_tokens"], result["total_tokens"]) == expected


@pytest.mark.parametrize(
    "template, answer, expected",
    [
        (
            "openai",
            {"model": "gpt-4o", "usage": {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12}},
            ("gpt-4o", 5, 7, 12),
        ),
        ("openai", {"model": "gpt-4.1", "usage": {"input_tokens": 3, "output_tokens": 4}}, ("gpt-4.1", 3, 4, 7)),
        (
            "anthropic",
            {"model": "claude-haiku", "usage": {"input_tokens": 10, "output_tokens": 20}},
            ("claude-haiku", 10, 20, 30),
        ),
        (
            "gemini",
            {
                "usageMetadata": {"promptTokenCount": 2, "candidatesTokenCount": 3, "totalTokenCount": 5},
                "modelVersion": "g",
            },
            ("g", 2, 3, 5),
        ),
        ("groq", {"model": "llama", "usage": {"prompt_tokens": 1, "completion_tokens": 1}}, ("llama", 1, 1, 2)),
    ],
)
@pytest.mark.parametrize("sized", [False, True], ids=["chunked", "declared-length"])
def test_json_answers_are_metered(template, answer, expected, sized):
    result = meter_of(template, "application/json", json.dumps(answer).encode(), 5, sized=sized)
    assert tuple(result[k] for k in ("model", "prompt_tokens", "completion_tokens", "total_tokens")) == expected


def test_gemini_json_array_stream_is_metered():
    body = json.dumps(
        [
            {"usageMetadata": {"promptTokenCount": 1}},
            {"usageMetadata": {"promptTokenCount": 1, "candidatesTokenCount": 2}},
        ]
    )
    result = meter_of("gemini", "application/json", body.encode())
    assert (result["prompt_tokens"], result["completion_tokens"], result["total_tokens"]) == (1, 2, 3)


def test_stream_without_usage_and_unmetered_templates_give_none():
    assert meter_of("openai", SSE, b'data: {"choices":[]}\n\ndata: [DONE]\n\n') is None
    assert meter_of("replicate", "application/json", b'{"usage":{"prompt_tokens":1}}') is None
    assert meter_of("openai", "application/json", b"") is None


@pytest.mark.parametrize(
    "content_type, body",
    [
        ("application/json", b"[" * 5000),
        ("application/json", b'{"usage":' + b"[" * 100_000 + b"}"),
        (SSE, b'data: {"usage":' + b"[" * 5000 + b"\n\n"),
        ("application/json", b"\xff\xfe garbage"),
        ("application/json", b'{"usage": {"prompt_tokens": true, "completion_tokens": -4, "total_tokens": 1e400}}'),
        ("application/json", b'{"usage": {"prompt_tokens": "9"}, "model": ["x"]}'),
        ("application/json", b'{"usage":' + b'{"a":' * 3000 + b"1" + b"}" * 3001),
    ],
)
def test_hostile_input_is_no_usage_never_an_exception(content_type, body):
    result = meter_of("openai", content_type, body, 4096)
    assert result is None or all(result[k] is None for k in ("prompt_tokens", "completion_tokens", "total_tokens"))


def test_many_tiny_chunks_cost_linear_time():
    body = b'{"model":"m","usage":{"prompt_tokens":1,"completion_tokens":2},"pad":"' + b"a" * (MAX_JSON - 100) + b'"}'
    started = time.perf_counter()
    assert meter_of("openai", "application/json", body, 16)["total_tokens"] == 3
    line = b'data: {"usage":{"prompt_tokens":4,"completion_tokens":5},"pad":"' + b"a" * (MAX_LINE - 100) + b'"}\n\n'
    assert meter_of("openai", SSE, line, 1)["total_tokens"] == 9
    assert time.perf_counter() - started < 10


def test_a_json_answer_past_the_limit_is_not_parsed():
    padding = b" " * MAX_JSON
    assert meter_of("openai", "application/json", b'{"usage":{"prompt_tokens":1}}' + padding, 65536) is None


def test_an_overlong_sse_line_is_skipped_and_metering_resumes_after_it():
    huge = b'data: {"usage":{"prompt_tokens":999,"x":"' + b"a" * (MAX_LINE * 4) + b'"}}\n\n'
    body = huge + OPENAI_STREAM
    result = meter_of("openai", SSE, body, 8192)
    assert (result["prompt_tokens"], result["total_tokens"]) == (9, 11)
    endless = UsageMeter.for_template("openai", SSE)
    for _ in range(200):  # 200 MiB without a newline: nothing kept
        endless.feed(b"x" * (1 << 20))
    assert len(endless._partial) <= MAX_LINE and endless.result() is None


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
def test_compressed_answers_are_metered(encoding):
    answer = json.dumps({"model": "gpt-4o", "usage": {"prompt_tokens": 5, "completion_tokens": 7}}).encode()
    packed = gzip.compress(answer) if encoding == "gzip" else zlib.compress(answer)
    meter = UsageMeter.for_template("openai", "application/json", encoding)
    for start in range(0, len(packed), 3):
        meter.feed(packed[start : start + 3])
    assert meter.result()["total_tokens"] == 12
    stream = UsageMeter.for_template("openai", SSE, encoding)
    stream.feed(gzip.compress(OPENAI_STREAM) if encoding == "gzip" else zlib.compress(OPENAI_STREAM))
    assert stream.result()["total_tokens"] == 11


def test_a_compression_bomb_or_corrupt_data_is_no_usage():
    bomb = gzip.compress(b"data: " + b" " * (70 << 20), 1)  # 70 MiB of spaces in a few hundred KB
    meter = UsageMeter.for_template("openai", SSE, "gzip")
    started = time.perf_counter()
    meter.feed(bomb)
    meter.feed(gzip.compress(OPENAI_STREAM))
    assert meter.result() is None and time.perf_counter() - started < 10
    corrupt = UsageMeter.for_template("openai", "application/json", "gzip")
    corrupt.feed(b"not gzip at all")
    assert corrupt.result() is None
    assert UsageMeter.for_template("openai", "application/json", "br").result() is None


def test_a_json_answer_of_declared_length_is_kept_by_append_alone_and_the_rest_by_the_full_meter():
    assert isinstance(UsageMeter.for_template("openai", "application/json", None, 500), SizedJsonMeter)
    for args in [(None, MAX_JSON + 1), ("gzip", 500), (None, None)]:  # too long, compressed, no length
        assert isinstance(UsageMeter.for_template("openai", "application/json", *args), UsageMeter)
    assert isinstance(UsageMeter.for_template("openai", SSE, None, 500), UsageMeter)
    assert meter_of("openai", "application/json", b"[1, {", sized=True) is None  # unreadable: no usage
    assert meter_of("unknown", "application/json", b'{"usage": {"prompt_tokens": 1}}', sized=True) is None
