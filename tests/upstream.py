"""A fake third-party upstream (OpenAI / Anthropic look-alike) for tests.

A real HTTP/1.1 server on 127.0.0.1 (ephemeral port) served from a background thread::

    with FakeUpstream() as fake:
        requests.post(fake.url + "/v1/chat/completions", json={"model": "m"})
        assert fake.requests[-1].header("content-type") == "application/json"

Routes match on the end of the path, so any prefix works (``/openai/v1/chat/completions``):

- ``POST .../v1/chat/completions``  OpenAI chat completion (JSON with ``x-request-id``, or SSE chunks + ``[DONE]``
  if ``"stream": true``)
- ``POST .../v1/messages``          Anthropic Message (JSON with ``request-id``, or the SSE event sequence if
  ``"stream": true``)
- ``POST .../models/M:generateContent``        Gemini answer (JSON)
- ``POST .../models/M:streamGenerateContent``  the same as SSE chunks (what ``?alt=sse`` asks for)
- ``.../redirect[?to=URL]``         302 to ``to`` (default ``http://127.0.0.1:1/``)
- ``.../set-cookie``                200 with ``Set-Cookie`` and account-identifying headers
- ``.../echo-key``                  401 echoing the credential received, in full and masked OpenAI-style
- ``.../slow?seconds=N``            sleeps N seconds, then 200
- ``.../drip?count=N&interval=S``   N SSE events ``data: n``; early client disconnects counted in ``closed_streams``
- ``.../status/NNN``                that status with a small JSON body
- anything else                     200 JSON ``{"method", "path", "body_len"}``
"""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self
from urllib.parse import parse_qs, urlsplit

OPENAI_TEXT = ["Hello", " from", " the", " fake", " upstream."]
DEFAULT_REDIRECT = "http://127.0.0.1:1/"
OPENAI_REQUEST_ID, ANTHROPIC_REQUEST_ID = "req_fake_openai_1", "req_fake_anthropic_1"  # the providers' own ids
SECRET_HEADERS = {
    "openai-organization": "org-secret",
    "openai-project": "proj-secret",
    "anthropic-organization-id": "x",
}


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str  # raw request target, query string included
    headers: list[tuple[str, str]]  # in arrival order, original case
    body: bytes

    def header(self, name: str) -> str | None:
        """First value of header `name` (case-insensitive), or None."""
        values = self.header_all(name)
        return values[0] if values else None

    def header_all(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k.lower() == name.lower()]

    def json(self) -> Any:
        return json.loads(self.body)


def mask_key(key: str) -> str:
    """OpenAI-style masking: first 5 characters, ``****``, last 4 (``sk-fa****1234``)."""
    return key[:5] + "****" + key[-4:] if len(key) > 12 else "****"


class FakeUpstream:
    def __init__(self, event_delay: float = 0.01) -> None:
        self.event_delay = event_delay  # seconds between streamed events
        self.closed_streams = 0  # /drip streams whose client went away before the end
        self.rejected_keys: set[str] = set()  # keys a models listing (`GET .../models`) answers 401 to
        self._requests: list[RecordedRequest] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._connections: set[socket.socket] = set()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(self))
        self._server.daemon_threads = True
        self._server.block_on_close = False
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    @property
    def requests(self) -> list[RecordedRequest]:
        """A snapshot of the requests received so far, oldest first."""
        with self._lock:
            return list(self._requests)

    def clear(self) -> None:
        with self._lock:
            self._requests.clear()
            self.closed_streams = 0

    def wait_for(self, predicate: Any, timeout: float = 5.0) -> bool:
        """Poll `predicate()` until true or `timeout` seconds pass (e.g. ``lambda: fake.closed_streams``)."""
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True

    def stop(self) -> None:
        """Stop serving and cut every open connection (idle keep-alive ones included)."""
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._thread.join(timeout=5)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _record(self, request: RecordedRequest) -> None:
        with self._lock:
            self._requests.append(request)

    def _stream_closed(self) -> None:
        with self._lock:
            self.closed_streams += 1


def _make_handler(fake: FakeUpstream) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def setup(self) -> None:
            super().setup()
            with fake._lock:
                fake._connections.add(self.connection)

        def finish(self) -> None:
            with fake._lock:
                fake._connections.discard(self.connection)
            super().finish()

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _read_body(self) -> bytes:
            if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                parts = []
                while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
                    parts.append(self.rfile.read(size))
                    self.rfile.readline()  # CRLF after each chunk
                while self.rfile.readline() not in (b"\r\n", b"\n", b""):  # trailers
                    pass
                return b"".join(parts)
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def _send(self, status: int, body: Any, headers: list[tuple[str, str]] | None = None) -> None:
            data = b"" if status in (204, 304) or status < 200 else json.dumps(body).encode()
            self.send_response(status)
            for name, value in headers or []:
                self.send_header(name, value)
            if data:
                self.send_header("Content-Type", "application/json")
            if status not in (204, 304):
                self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

        def _start_stream(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-cache")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            self.wfile.flush()

        def _chunk(self, data: bytes) -> None:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()

        def _stream(self, events: list[bytes], delay: float) -> bool:
            """Send each event as its own chunk; False if the client went away first."""
            try:
                self._start_stream()
                for i, event in enumerate(events):
                    if i and delay:
                        time.sleep(delay)
                    self._chunk(event)
                self._chunk(b"")
                return True
            except OSError:  # BrokenPipeError, ConnectionResetError
                self.close_connection = True
                return False

        def _handle(self) -> None:
            body = self._read_body()
            fake._record(RecordedRequest(self.command, self.path, list(self.headers.items()), body))
            url = urlsplit(self.path)
            path, query = url.path.rstrip("/"), parse_qs(url.query)

            def arg(name: str, default: str) -> str:
                return query.get(name, [default])[0]

            try:
                payload = json.loads(body) if body else {}
            except ValueError:
                payload = {}
            payload = payload if isinstance(payload, dict) else {}
            stream, model = payload.get("stream") is True, str(payload.get("model", "fake-model"))
            if path.endswith("/models") and self.command == "GET" and _sent_key(self.headers) in fake.rejected_keys:
                self._send(401, {"error": {"message": "Incorrect API key provided.", "code": "invalid_api_key"}})
            elif status := re.search(r"/status/(\d{3})$", path):
                self._send(int(status[1]), {"status": int(status[1])})
            elif path.endswith("/v1/chat/completions") and self.command == "POST":
                if stream:
                    self._stream(_openai_events(model, payload), fake.event_delay)
                else:
                    self._send(200, _openai_completion(model), [("x-request-id", OPENAI_REQUEST_ID)])
            elif path.endswith("/v1/messages") and self.command == "POST":
                if stream:
                    self._stream(_anthropic_events(model), fake.event_delay)
                else:
                    self._send(
                        200, _anthropic_message(model, "".join(OPENAI_TEXT)), [("request-id", ANTHROPIC_REQUEST_ID)]
                    )
            elif gemini := re.search(r"/models/([^/:]+):(generateContent|streamGenerateContent)$", path):
                if gemini[2] == "streamGenerateContent":
                    self._stream(_gemini_events(gemini[1]), fake.event_delay)
                else:
                    self._send(200, _gemini_answer(gemini[1], OPENAI_TEXT, done=True))
            elif path.endswith("/redirect"):
                self._send(302, {"redirect": True}, [("Location", arg("to", DEFAULT_REDIRECT))])
            elif path.endswith("/set-cookie"):
                cookies = [
                    ("Set-Cookie", "session=upstream-session; Path=/; HttpOnly"),
                    ("Set-Cookie", "__cf_bm=t; Path=/"),
                ]
                self._send(200, {"cookies": True}, cookies + list(SECRET_HEADERS.items()))
            elif path.endswith("/echo-key"):
                self._send(401, _echo_key(self.headers, arg("key", "") or None))
            elif path.endswith("/slow"):
                fake._stopping.wait(float(arg("seconds", "1")))
                self._send(200, {"slow": True})
            elif path.endswith("/drip"):
                count, interval = int(arg("count", "10")), float(arg("interval", "0.1"))
                if not self._stream([b"data: %d\n\n" % n for n in range(count)], interval):
                    fake._stream_closed()
            else:
                self._send(200, {"method": self.command, "path": self.path, "body_len": len(body)})

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _handle

    return Handler


def _sent_key(headers: Any) -> str:
    sent = headers.get("Authorization") or headers.get("x-api-key") or headers.get("x-goog-api-key") or ""
    return sent.removeprefix("Bearer ").strip()


def _echo_key(headers: Any, query_key: str | None) -> dict[str, Any]:
    received = {
        "authorization": headers.get("Authorization"),
        "x-api-key": headers.get("x-api-key"),
        "x-goog-api-key": headers.get("x-goog-api-key"),
        "key": query_key,
    }
    key = next((v for v in received.values() if v), "") or ""
    key = key.removeprefix("Bearer ").strip()
    message = f"Incorrect API key provided: {mask_key(key)}. You can find your API key at https://example.invalid."
    return {
        "error": {"message": message, "type": "invalid_request_error", "param": None, "code": "invalid_api_key"},
        "received": received,
    }


def _openai_completion(model: str) -> dict[str, Any]:
    message = {"role": "assistant", "content": "".join(OPENAI_TEXT), "refusal": None}
    return {
        "id": "chatcmpl-fake123",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 9, "completion_tokens": len(OPENAI_TEXT), "total_tokens": 9 + len(OPENAI_TEXT)},
        "system_fingerprint": "fp_fake",
    }


def _openai_events(model: str, payload: dict[str, Any]) -> list[bytes]:
    base = {"id": "chatcmpl-fake123", "object": "chat.completion.chunk", "created": int(time.time()), "model": model}
    deltas = [{"role": "assistant", "content": ""}] + [{"content": text} for text in OPENAI_TEXT] + [{}]
    chunks = [
        {**base, "choices": [{"index": 0, "delta": d, "logprobs": None, "finish_reason": None if d else "stop"}]}
        for d in deltas
    ]
    if (payload.get("stream_options") or {}).get("include_usage"):
        usage = {"prompt_tokens": 9, "completion_tokens": len(OPENAI_TEXT), "total_tokens": 9 + len(OPENAI_TEXT)}
        chunks.append({**base, "choices": [], "usage": usage})
    return [b"data: " + json.dumps(c).encode() + b"\n\n" for c in chunks] + [b"data: [DONE]\n\n"]


def _anthropic_message(model: str, text: str) -> dict[str, Any]:
    return {
        "id": "msg_fake123",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [{"type": "text", "text": text}] if text else [],
        "stop_reason": "end_turn" if text else None,
        "stop_sequence": None,
        "usage": {"input_tokens": 9, "output_tokens": len(OPENAI_TEXT) if text else 1},
    }


def _anthropic_events(model: str) -> list[bytes]:
    events: list[tuple[str, dict[str, Any]]] = [
        ("message_start", {"type": "message_start", "message": _anthropic_message(model, "")}),
        (
            "content_block_start",
            {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        ),
        ("ping", {"type": "ping"}),
        *[
            (
                "content_block_delta",
                {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": t}},
            )
            for t in OPENAI_TEXT
        ],
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                "usage": {"output_tokens": len(OPENAI_TEXT)},
            },
        ),
        ("message_stop", {"type": "message_stop"}),
    ]
    return [f"event: {name}\ndata: {json.dumps(data)}\n\n".encode() for name, data in events]


def _gemini_answer(model: str, texts: list[str], *, done: bool) -> dict[str, Any]:
    candidate: dict[str, Any] = {"content": {"role": "model", "parts": [{"text": "".join(texts)}]}, "index": 0}
    answer: dict[str, Any] = {"candidates": [candidate], "modelVersion": model, "responseId": "resp_fake_gemini_1"}
    if done:
        candidate["finishReason"] = "STOP"
        answer["usageMetadata"] = {"promptTokenCount": 9, "candidatesTokenCount": 5, "totalTokenCount": 14}
    return answer


def _gemini_events(model: str) -> list[bytes]:
    last = len(OPENAI_TEXT) - 1
    chunks = [_gemini_answer(model, [text], done=i == last) for i, text in enumerate(OPENAI_TEXT)]
    return [b"data: " + json.dumps(chunk).encode() + b"\r\n\r\n" for chunk in chunks]
