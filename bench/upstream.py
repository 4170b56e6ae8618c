"""Fast fake upstream for load tests: gevent StreamServer with a minimal hand-parsed HTTP/1.1 keep-alive loop.

    python -m bench.upstream --port 8101

- ``POST .../v1/chat/completions`` -> a fixed ~1 KB chat.completion JSON (Content-Length, keep-alive)
- ``GET .../sse?events=N&interval=S[&close=1]`` -> text/event-stream, N events ~100 bytes each, one every S seconds
  on an absolute schedule, each carrying its send time ``"t": time.time()``. Chunked by default; with ``close=1``
  no Content-Length and the connection closes at the end.
- anything else -> 404
"""

from __future__ import annotations

import argparse
import json
import signal
import socket
import time
from urllib.parse import parse_qs

import gevent
from gevent.server import StreamServer

from bench.load import raise_nofile_limit

_TEXT = "The quick brown fox jumps over the lazy dog. " * 16
_COMPLETION = json.dumps(
    {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "created": 1700000000,
        "model": "bench-model",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": _TEXT}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 150, "total_tokens": 160},
    }
).encode()
JSON_RESPONSE = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(_COMPLETION) + _COMPLETION
)
NOT_FOUND = b"HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
SSE_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
_PAD = "x" * 48


class ClientGone(Exception):
    pass


def _recv_until(sock: socket.socket, buf: bytes, marker: bytes) -> tuple[bytes, bytes]:
    """Return (data before marker, rest after it), reading more as needed."""
    while (i := buf.find(marker)) < 0:
        data = sock.recv(65536)
        if not data:
            raise ClientGone
        buf += data
    return buf[:i], buf[i + len(marker) :]


def _recv_exact(sock: socket.socket, buf: bytes, n: int) -> tuple[bytes, bytes]:
    while len(buf) < n:
        data = sock.recv(65536)
        if not data:
            raise ClientGone
        buf += data
    return buf[:n], buf[n:]


def _skip_body(sock: socket.socket, buf: bytes, headers: dict[bytes, bytes]) -> bytes:
    if b"chunked" in headers.get(b"transfer-encoding", b"").lower():
        while True:
            line, buf = _recv_until(sock, buf, b"\r\n")
            size = int(line.split(b";")[0], 16)
            if size == 0:
                while True:  # trailers up to the empty line
                    line, buf = _recv_until(sock, buf, b"\r\n")
                    if not line:
                        return buf
            _, buf = _recv_exact(sock, buf, size + 2)
    _, buf = _recv_exact(sock, buf, int(headers.get(b"content-length", b"0")))
    return buf


def _sse(sock: socket.socket, query: bytes) -> bool:
    """Stream the events; True if the connection can be kept alive afterwards."""
    args = parse_qs(query.decode())
    events = int(args.get("events", ["10"])[0])
    interval = float(args.get("interval", ["0.05"])[0])
    close = args.get("close", ["0"])[0] == "1"
    sock.sendall(SSE_HEAD + (b"Connection: close\r\n\r\n" if close else b"Transfer-Encoding: chunked\r\n\r\n"))
    start = time.monotonic()
    for i in range(events):
        delay = start + i * interval - time.monotonic()
        if delay > 0:
            gevent.sleep(delay)
        event = b'data: {"i":%d,"t":%.6f,"pad":"%s"}\n\n' % (i, time.time(), _PAD.encode())
        sock.sendall(event if close else b"%x\r\n%s\r\n" % (len(event), event))
    if not close:
        sock.sendall(b"0\r\n\r\n")
    return not close


def handle(sock: socket.socket, _address: object) -> None:
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    buf = b""
    try:
        while True:
            head, buf = _recv_until(sock, buf, b"\r\n\r\n")
            lines = head.split(b"\r\n")
            method, target, version = lines[0].split(b" ", 2)
            headers = {}
            for line in lines[1:]:
                name, _, value = line.partition(b":")
                headers[name.strip().lower()] = value.strip()
            buf = _skip_body(sock, buf, headers)
            keep_alive = version == b"HTTP/1.1" and headers.get(b"connection", b"").lower() != b"close"
            path, _, query = target.partition(b"?")
            if path.endswith(b"/v1/chat/completions") and method == b"POST":
                sock.sendall(JSON_RESPONSE)
            elif path.endswith(b"/sse"):
                keep_alive = _sse(sock, query) and keep_alive
            else:
                sock.sendall(NOT_FOUND)
            if not keep_alive:
                return
    except (ClientGone, OSError, ValueError):
        pass
    finally:
        sock.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8101)
    args = parser.parse_args()
    raise_nofile_limit()
    server = StreamServer((args.host, args.port), handle, backlog=4096)
    gevent.signal_handler(signal.SIGTERM, server.stop, 1)
    gevent.signal_handler(signal.SIGINT, server.stop, 1)
    print(f"bench upstream on http://{args.host}:{args.port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
