"""Usage meters: model and token counts read from provider answers as they pass.

A meter never buffers a stream and never delays a chunk: the relay hands it each chunk (bytes,
as received, compressed or not) after sending it on. JSON answers are kept only up to `MAX_JSON` bytes; SSE lines longer than
`MAX_LINE` are skipped; any parse failure (bad JSON, deep nesting, memory) is "no usage".
"""

from __future__ import annotations

import zlib
from collections.abc import Callable

import orjson

MAX_JSON = 1 << 20  # bytes of a JSON answer kept for parsing
MAX_LINE = 1 << 16  # longest SSE line parsed
MAX_COUNT = 1 << 53
MAX_INFLATED = 64 << 20  # bytes a compressed answer may inflate to before metering gives up
INFLATE_STEP = 1 << 20
WBITS = {"gzip": 31, "x-gzip": 31, "deflate": 15}  # Content-Encoding -> zlib window bits
FIELDS = ("model", "prompt_tokens", "completion_tokens", "total_tokens")

# template -> dialect of its answers (templates not listed are not metered)
DIALECTS = {
    "openai": "openai",
    "mistral": "openai",
    "groq": "openai",
    "custom": "openai",
    "anthropic": "anthropic",
    "gemini": "gemini",
}


def _count(value: object) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < MAX_COUNT:
        return value
    return None


def _model(value: object) -> str | None:
    return value[:200] if isinstance(value, str) and value else None


def _openai(obj: dict) -> dict:
    usage = obj.get("usage")
    found = {"model": _model(obj.get("model"))}
    if isinstance(usage, dict):  # chat/completions names, or the Responses API's
        found["prompt_tokens"] = _count(usage.get("prompt_tokens", usage.get("input_tokens")))
        found["completion_tokens"] = _count(usage.get("completion_tokens", usage.get("output_tokens")))
        found["total_tokens"] = _count(usage.get("total_tokens"))
    response = obj.get("response")  # Responses API stream: response.completed carries the response
    if isinstance(response, dict) and "usage" in response:
        found.update({k: v for k, v in _openai(response).items() if v is not None})
    return found


def _anthropic(obj: dict) -> dict:
    message = obj.get("message")  # message_start wraps the message
    source = message if isinstance(message, dict) else obj
    usage = source.get("usage")
    if not isinstance(usage, dict) and isinstance(obj.get("usage"), dict):
        usage = obj["usage"]  # message_delta: usage beside the delta
    found = {"model": _model(source.get("model"))}
    if isinstance(usage, dict):
        found["prompt_tokens"] = _count(usage.get("input_tokens"))
        found["completion_tokens"] = _count(usage.get("output_tokens"))
    return found


def _gemini(obj: dict) -> dict:
    usage = obj.get("usageMetadata")
    found = {"model": _model(obj.get("modelVersion"))}
    if isinstance(usage, dict):
        found["prompt_tokens"] = _count(usage.get("promptTokenCount"))
        found["completion_tokens"] = _count(usage.get("candidatesTokenCount"))
        found["total_tokens"] = _count(usage.get("totalTokenCount"))
    return found


READERS = {"openai": _openai, "anthropic": _anthropic, "gemini": _gemini}


def _parse(data: bytes) -> object:
    """The JSON document `data` holds, or None. orjson: twice as fast as the standard library
    on an answer (it parses every metered one), bytes in, strict, nesting capped at 1,024."""
    try:
        return orjson.loads(data)
    except (ValueError, MemoryError):  # orjson.JSONDecodeError is a ValueError
        return None


class UsageMeter:
    """Reads one answer: `feed(chunk)` for each chunk as it passes, then `result()`."""

    __slots__ = ("_chunks", "_found", "_inflate", "_inflated", "_overflow", "_partial", "_read", "_size", "_stream")

    def __init__(self, dialect: str | None, stream: bool):
        self._read = READERS.get(dialect) if dialect else None
        self._stream = stream
        self._found: dict = {}
        self._chunks: list[bytes] = []  # JSON: the answer so far
        self._size = 0
        self._partial = bytearray()  # SSE: the last line's start
        self._overflow = False  # JSON: too large; SSE: inside an overlong line
        self._inflate = None  # a zlib decompressor when the answer is gzip or deflate encoded
        self._inflated = 0

    @classmethod
    def for_template(
        cls, template: str, content_type: str | None, content_encoding: str | None = None, length: int | None = None
    ) -> UsageMeter | SizedJsonMeter:
        """The meter for an answer of `template` with these headers (brotli and others: not
        metered); `length`: its declared length, if any (urllib3 reads no more)."""
        kind = (content_type or "").split(";", 1)[0].strip().lower()
        if content_encoding is None and length is not None and length <= MAX_JSON and kind != "text/event-stream":
            return SizedJsonMeter(READERS.get(DIALECTS.get(template)))  # type: ignore[arg-type]
        encoding = (content_encoding or "identity").strip().lower()
        dialect = DIALECTS.get(template) if encoding in ("identity", *WBITS) else None
        meter = cls(dialect, kind == "text/event-stream")
        if encoding in WBITS:
            meter._inflate = zlib.decompressobj(WBITS[encoding])
        return meter

    def feed(self, chunk: bytes) -> None:
        """Take the next chunk of the answer; never raises."""
        if self._read is None or not chunk:
            return
        try:
            if self._inflate is None:
                self._feed_plain(chunk)
                return
            while chunk and self._read is not None:  # inflated a step at a time: memory stays bounded
                piece = self._inflate.decompress(chunk, INFLATE_STEP)
                self._inflated += len(piece)
                if self._inflated > MAX_INFLATED:
                    self._read = None
                    return
                self._feed_plain(piece)
                chunk = self._inflate.unconsumed_tail
        except (MemoryError, RecursionError, zlib.error):
            self._read = None

    def _feed_plain(self, chunk: bytes) -> None:
        if self._stream:
            self._feed_sse(chunk)
        elif not self._overflow:
            self._size += len(chunk)
            if self._size > MAX_JSON:
                self._overflow, self._chunks = True, []
            else:
                self._chunks.append(chunk)

    def _feed_sse(self, chunk: bytes) -> None:
        start = 0
        while (end := chunk.find(b"\n", start)) >= 0:
            if self._overflow:  # the end of an overlong line: skipped
                self._overflow = False
            elif self._partial:
                self._partial += chunk[start:end]
                self._line(bytes(self._partial))
            else:
                self._line(chunk[start:end])
            self._partial.clear()
            start = end + 1
        if start < len(chunk) and not self._overflow:
            if len(self._partial) + len(chunk) - start > MAX_LINE:
                self._partial.clear()
                self._overflow = True
            else:
                self._partial += chunk[start:]

    def _line(self, line: bytes) -> None:
        if len(line) <= MAX_LINE and line.startswith(b"data:") and b"usage" in line:
            if b'"usage":null' not in line:  # OpenAI's chunks before the last one
                self._take(_parse(line[5:]))

    def _take(self, obj: object) -> None:
        _take(self._found, self._read, obj)

    def result(self) -> dict | None:
        """`{model, prompt_tokens, completion_tokens, total_tokens}` read so far, or None."""
        if self._read is None:
            return None
        try:
            if self._chunks:
                self._take(_parse(b"".join(self._chunks)))
                self._chunks = []
        except (MemoryError, RecursionError):
            return None
        return _result(self._found)


class SizedJsonMeter:
    """The common case: an uncompressed JSON answer whose declared length is within `MAX_JSON`.
    `feed` is its list's own `append` (no Python call per chunk); `result()` parses it once."""

    __slots__ = ("_chunks", "_read", "feed")

    def __init__(self, read: Callable[[dict], dict] | None):
        self._read = read
        self._chunks: list[bytes] = []
        self.feed = self._chunks.append

    def result(self) -> dict | None:
        if self._read is None:
            return None
        found: dict = {}
        try:
            _take(found, self._read, _parse(b"".join(self._chunks)))
        except (MemoryError, RecursionError):
            return None
        return _result(found)


def _take(found: dict, read: Callable[[dict], dict], obj: object) -> None:
    """Add what `read` finds in `obj` (a dialect's answer or event, or a list of them) to `found`."""
    if isinstance(obj, list):  # Gemini's streamGenerateContent without alt=sse: a JSON array
        for item in obj:
            if isinstance(item, dict):
                _take(found, read, item)
    elif isinstance(obj, dict):
        found.update({k: v for k, v in read(obj).items() if v is not None})


def _result(found: dict) -> dict | None:
    if not found:
        return None
    result = {name: found.get(name) for name in FIELDS}
    prompt, completion = result["prompt_tokens"], result["completion_tokens"]
    if result["total_tokens"] is None and prompt is not None and completion is not None:
        result["total_tokens"] = prompt + completion
    return result
