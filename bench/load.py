"""Load generator: asyncio protocols speaking HTTP/1.1 by hand (keep-alive, Content-Length / chunked / close bodies).

Cheap on CPU on purpose: one incremental parser per connection, no per-request tasks or timers.

- ``json_load(url, headers, body, concurrency, duration_s, max_requests)``: closed-loop POSTs, each worker one
  keep-alive connection -> requests/s, p50/p99 latency (ms), errors.
- ``sse_load(url, headers, streams, events, interval)``: ``streams`` GETs of ``url?events=N&interval=S``, opened
  ``ramp_batch`` at a time every ``ramp_step_s`` -> streams with every event, errors, p99 inter-event gap as received,
  p99 delivery delay against the ``"t"`` send timestamp each event carries (see bench.upstream).
"""

from __future__ import annotations

import asyncio
import re
import resource
import signal
import time
from collections.abc import Callable
from types import FrameType
from typing import Any
from urllib.parse import urlsplit

_HEAD, _BODY, _CHUNK_SIZE, _CHUNK_DATA, _CHUNK_END, _TRAILER, _UNTIL_CLOSE, _IDLE = range(8)
_TIMESTAMP = re.compile(rb'"t":([0-9.]+)')


def raise_nofile_limit() -> int:
    """Raise this process's open-file soft limit to the hard limit; return the new limit."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else 1 << 20
    resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return target


def percentile(values: list[float], pct: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(pct / 100 * (len(ordered) - 1)))]


class HttpConnection(asyncio.Protocol):
    """One client connection; `request(raw)` returns a future resolved with the status once the body is complete."""

    def __init__(self, on_body: Callable[[bytes], None] | None = None) -> None:
        self.on_body = on_body
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.state = _IDLE
        self.remaining = 0
        self.status = 0
        self.keep_alive = True
        self.open = False
        self.response: asyncio.Future[int] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.open = True

    def request(self, raw: bytes) -> asyncio.Future[int]:
        assert self.transport is not None
        self.response = asyncio.get_running_loop().create_future()
        self.state = _HEAD
        self.transport.write(raw)
        return self.response

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.open = False
        if self.state == _UNTIL_CLOSE:
            self._finish()
        elif self.response is not None and not self.response.done():
            self.response.set_exception(ConnectionError(f"connection lost in state {self.state}: {exc}"))

    def _finish(self) -> None:
        self.state = _IDLE
        if self.response is not None and not self.response.done():
            self.response.set_result(self.status)

    def data_received(self, data: bytes) -> None:
        self.buf += data
        try:
            self._parse()
        except (ValueError, IndexError) as exc:
            if self.response is not None and not self.response.done():
                self.response.set_exception(exc)
            self.close()

    def _parse(self) -> None:
        buf = self.buf
        while buf:
            state = self.state
            if state == _HEAD:
                end = buf.find(b"\r\n\r\n")
                if end < 0:
                    return
                lines = bytes(buf[:end]).split(b"\r\n")
                del buf[: end + 4]
                self.status = int(lines[0][9:12])
                length, chunked, self.keep_alive = -1, False, True
                for line in lines[1:]:
                    name, _, value = line.partition(b":")
                    name = name.strip().lower()
                    if name == b"content-length":
                        length = int(value)
                    elif name == b"transfer-encoding":
                        chunked = b"chunked" in value.lower()
                    elif name == b"connection":
                        self.keep_alive = value.strip().lower() != b"close"
                if chunked:
                    self.state = _CHUNK_SIZE
                elif length > 0:
                    self.state, self.remaining = _BODY, length
                elif length == 0 or self.status in (204, 304):
                    self._finish()
                else:
                    self.state, self.keep_alive = _UNTIL_CLOSE, False
            elif state in (_BODY, _CHUNK_DATA):
                n = min(len(buf), self.remaining)
                if self.on_body is not None:
                    self.on_body(bytes(buf[:n]))
                del buf[:n]
                self.remaining -= n
                if self.remaining == 0:
                    if state == _BODY:
                        self._finish()
                    else:
                        self.state = _CHUNK_END
            elif state == _CHUNK_END:
                if len(buf) < 2:
                    return
                del buf[:2]
                self.state = _CHUNK_SIZE
            elif state in (_CHUNK_SIZE, _TRAILER):
                end = buf.find(b"\r\n")
                if end < 0:
                    return
                line = bytes(buf[:end])
                del buf[: end + 2]
                if state == _TRAILER:
                    if not line:
                        self._finish()
                elif (size := int(line.split(b";")[0], 16)) == 0:
                    self.state = _TRAILER
                else:
                    self.state, self.remaining = _CHUNK_DATA, size
            elif state == _UNTIL_CLOSE:
                if self.on_body is not None:
                    self.on_body(bytes(buf))
                buf.clear()
            else:  # data while idle: protocol error
                raise ValueError("unexpected data between responses")


def _target(url: str) -> tuple[str, int, str]:
    parts = urlsplit(url)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return parts.hostname or "127.0.0.1", parts.port or 80, path


def _request(method: str, host: str, port: int, path: str, headers: dict[str, str], body: bytes = b"") -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}:{port}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    if body or method in ("POST", "PUT", "PATCH"):
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def _connect(host: str, port: int, on_body: Callable[[bytes], None] | None = None) -> HttpConnection:
    _transport, conn = await asyncio.get_running_loop().create_connection(lambda: HttpConnection(on_body), host, port)
    return conn


async def json_load(
    url: str,
    headers: dict[str, str],
    body: bytes,
    concurrency: int,
    duration_s: float,
    max_requests: int,
) -> dict[str, Any]:
    """Closed loop: `concurrency` workers POST `body` back to back until `duration_s` or `max_requests`."""
    host, port, path = _target(url)
    raw = _request("POST", host, port, path, {"Content-Type": "application/json", **headers}, body)
    latencies: list[float] = []
    errors: dict[str, int] = {}
    issued = 0
    deadline = time.monotonic() + duration_s

    def error(kind: str) -> None:
        errors[kind] = errors.get(kind, 0) + 1

    async def worker() -> None:
        nonlocal issued
        conn: HttpConnection | None = None
        try:
            while time.monotonic() < deadline and issued < max_requests:
                issued += 1
                try:
                    if conn is None or not conn.open:
                        conn = await _connect(host, port)
                    start = time.perf_counter()
                    status = await conn.request(raw)
                    elapsed = time.perf_counter() - start
                    if 200 <= status < 300:
                        latencies.append(elapsed)
                    else:
                        error(f"http_{status}")
                    if not conn.keep_alive:
                        conn.close()
                        conn = None
                except (OSError, ValueError) as exc:
                    error(type(exc).__name__)
                    if conn is not None:
                        conn.close()
                    conn = None
                    await asyncio.sleep(0.05)
        finally:
            if conn is not None:
                conn.close()

    started = time.monotonic()
    tasks = [asyncio.create_task(worker()) for _ in range(concurrency)]
    _done, pending = await asyncio.wait(tasks, timeout=duration_s + 10)
    for task in pending:  # requests stuck past the grace period
        task.cancel()
        error("timeout")
    elapsed = time.monotonic() - started
    return {
        "concurrency": concurrency,
        "requests": len(latencies),
        "errors": sum(errors.values()),
        "error_kinds": errors,
        "elapsed_s": round(elapsed, 2),
        "rps": round(len(latencies) / elapsed, 1),
        "p50_ms": round(percentile(latencies, 50) * 1000, 2),
        "p99_ms": round(percentile(latencies, 99) * 1000, 2),
    }


class _SseStream:
    """Counts the events of one stream; records inter-arrival gaps and delays into shared lists."""

    __slots__ = ("count", "delays", "first", "gaps", "last", "tail")

    def __init__(self, gaps: list[float], delays: list[float]) -> None:
        self.count, self.first, self.last, self.tail = 0, 0.0, 0.0, b""
        self.gaps, self.delays = gaps, delays

    def on_body(self, data: bytes) -> None:
        now = time.time()
        data = self.tail + data if self.tail else data
        end = data.rfind(b"\n\n")
        if end < 0:
            self.tail = data
            return
        self.tail = data[end + 2 :]
        stamps = _TIMESTAMP.findall(data, 0, end)
        if not stamps:
            return
        if self.last:
            self.gaps.append(now - self.last)
        else:
            self.first = now
        self.gaps.extend([0.0] * (len(stamps) - 1))  # events that arrived in the same read
        self.last = now
        self.delays.extend(now - float(stamp) for stamp in stamps)
        self.count += len(stamps)


async def sse_load(
    url: str,
    headers: dict[str, str],
    streams: int,
    events: int,
    interval: float,
    ramp_batch: int = 200,
    ramp_step_s: float = 0.1,
    grace_s: float = 10.0,
) -> dict[str, Any]:
    """Hold `streams` SSE streams of `events` events each `interval` seconds; count those that got every event."""
    host, port, path = _target(url)
    path += ("&" if "?" in path else "?") + f"events={events}&interval={interval}"
    raw = _request("GET", host, port, path, {"Accept": "text/event-stream", **headers})
    gaps: list[float] = []
    delays: list[float] = []
    results: list[str] = []
    opens: list[float] = []  # seconds from starting a stream to its first event

    async def one() -> None:
        stream = _SseStream(gaps, delays)
        conn: HttpConnection | None = None
        began = time.time()
        try:
            conn = await _connect(host, port, stream.on_body)
            status = await conn.request(raw)
            if status != 200:
                results.append(f"http_{status}")
            else:
                results.append("ok" if stream.count == events else "missing_events")
        except (OSError, ValueError) as exc:
            results.append("connect_error" if conn is None else type(exc).__name__)
        finally:
            opens.append(stream.first - began if stream.first else float("inf"))
            if conn is not None:
                conn.close()

    started = time.monotonic()
    tasks = []
    for first in range(0, streams, ramp_batch):
        tasks += [asyncio.create_task(one()) for _ in range(min(ramp_batch, streams - first))]
        await asyncio.sleep(ramp_step_s)
    _done, pending = await asyncio.wait(tasks, timeout=events * interval + grace_s)
    for task in pending:
        task.cancel()
        results.append("timeout")
    await asyncio.sleep(0)
    elapsed = time.monotonic() - started
    kinds: dict[str, int] = {}
    for result in results:
        kinds[result] = kinds.get(result, 0) + 1
    ok = kinds.pop("ok", 0)
    return {
        "streams": streams,
        "events_per_stream": events,
        "interval_s": interval,
        "streams_ok": ok,
        "errors": streams - ok,
        "error_kinds": kinds,
        "events_received": len(delays),
        "events_expected": streams * events,
        "elapsed_s": round(elapsed, 2),
        "gap_p50_ms": round(percentile(gaps, 50) * 1000, 1),
        "gap_p99_ms": round(percentile(gaps, 99) * 1000, 1),
        "gap_max_ms": round(max(gaps, default=float("nan")) * 1000, 1),
        "delay_p50_ms": round(percentile(delays, 50) * 1000, 1),
        "delay_p99_ms": round(percentile(delays, 99) * 1000, 1),
        "first_event_p50_ms": round(percentile(opens, 50) * 1000, 1),
        "first_event_p99_ms": round(percentile(opens, 99) * 1000, 1),
        "first_event_max_ms": round(max(opens, default=float("nan")) * 1000, 1),
    }


def exit_on_signals() -> None:
    """SIGTERM and SIGHUP raise SystemExit, so a bench's `finally` stops what it started."""

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
