"""Issue 14, item 6: the deadline and the read timeout cover the request body too, under the served
configuration (gunicorn, gevent workers); a cut upload is never completed towards the provider."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from tests.helpers import FAKE_KEY, bearer
from tests.servers import Gunicorn

DEADLINE = 3.0
READ_TIMEOUT = 1.2
BODY = 200_000  # past the size read at once: streamed to the provider as it arrives
FIRST = 70_000  # sent at once, so the provider's request has begun


class Recorder:
    """A provider that records, per request, how much body it got and whether the body ended
    (Content-Length reached, or the last chunk of a chunked body) or the connection closed first."""

    def __init__(self) -> None:
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)
        self._sock.settimeout(0.05)
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}"
        self.seen: list[tuple[bool, int]] = []  # (complete, body bytes received)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except (TimeoutError, OSError):
                continue
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        conn.settimeout(30)
        data = b""
        with conn:
            try:
                while b"\r\n\r\n" not in data and (chunk := conn.recv(65536)):
                    data += chunk
                head, _, body = data.partition(b"\r\n\r\n")
                lower = head.lower()
                chunked = b"transfer-encoding: chunked" in lower
                length = None if chunked else int(lower.split(b"content-length:")[1].split(b"\r\n")[0])
                while not (body.endswith(b"0\r\n\r\n") if chunked else len(body) >= length):
                    chunk = conn.recv(65536)
                    if not chunk:
                        self.seen.append((False, len(body)))
                        return
                    body += chunk
                self.seen.append((True, len(body)))
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}")
            except OSError:
                self.seen.append((False, len(body) if "body" in locals() else 0))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._sock.close()


@pytest.fixture(scope="module")
def served(bao, approle_file, tmp_path_factory):
    env = {
        "VAULT_ADDR": bao.addr,
        "VAULT_APPROLE_FILE": approle_file,
        "JETPERO_ALLOW_PRIVATE_UPSTREAMS": "true",
        "JETPERO_SYNC_INTERVAL": "0.5",
        "JETPERO_UPSTREAM_READ_TIMEOUT": str(READ_TIMEOUT),
        "JETPERO_UPSTREAM_DEADLINE": str(DEADLINE),
        "JETPERO_LOG_LEVEL": "WARNING",
    }
    server = Gunicorn(env, tmp_path_factory.mktemp("upload") / "gunicorn.log", workers=1)
    yield server
    server.stop()


@pytest.fixture
def recorder():
    made = Recorder()
    yield made
    made.stop()


@pytest.fixture
def token(api, project, recorder):
    org, slug = project.split("/")
    path = f"/orgs/{org}/projects/{slug}"
    assert (
        api.put(
            f"{path}/providers/openai", json={"template": "openai", "api_key": FAKE_KEY, "base_url": recorder.url}
        ).status_code
        == 200
    )
    response = api.post(f"{path}/tokens", json={"name": "t", "environment": "development", "expires_in": 600})
    return response.json["token"]


def _open(served: Gunicorn, token: str, framing: bytes) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", served.port), timeout=DEADLINE + 10)
    auth = bearer(token)["Authorization"].encode()
    sock.sendall(
        b"POST /proxy/openai/v1/files HTTP/1.1\r\nHost: x\r\nAuthorization: "
        + auth
        + b"\r\nContent-Type: application/octet-stream\r\n"
        + framing
        + b"\r\n"
    )
    return sock


def _trickle(sock: socket.socket, pieces, interval: float, until: float) -> float | None:
    """Send `pieces` one per `interval` until `until`; when JetPero answered or hung up (None if never)."""
    sock.setblocking(False)
    try:
        for piece in pieces:
            if time.monotonic() > until:
                return None
            try:
                if sock.recv(65536, socket.MSG_PEEK) is not None:
                    return time.monotonic()
            except BlockingIOError:
                pass
            try:
                sock.sendall(piece)
            except BlockingIOError:
                pass
            except OSError:
                return time.monotonic()
            time.sleep(interval)
    finally:
        sock.setblocking(True)
    return None


def _answer(sock: socket.socket) -> bytes:
    sock.settimeout(5)
    try:
        return sock.recv(65536)
    except OSError:
        return b""


def test_a_trickled_upload_is_cut_at_the_deadline_and_never_completed_upstream(served, token, recorder):
    sock = _open(served, token, b"Content-Length: %d\r\n" % BODY)
    with sock:
        started = time.monotonic()
        sock.sendall(b"a" * FIRST)
        pieces = [b"a" * 200] * ((BODY - FIRST) // 200)  # a piece well within the read timeout
        ended = _trickle(sock, pieces, 0.25, started + DEADLINE + 6)
        assert ended is not None, "the upload was never cut"
        assert ended - started < DEADLINE + 1.5
        assert _answer(sock).startswith((b"HTTP/1.1 408", b""))
    time.sleep(0.5)
    assert recorder.seen and all(not complete for complete, _ in recorder.seen), recorder.seen


def test_a_silent_upload_is_cut_at_the_read_timeout_and_never_completed_upstream(served, token, recorder):
    sock = _open(served, token, b"Content-Length: %d\r\n" % BODY)
    with sock:
        started = time.monotonic()
        sock.sendall(b"a" * FIRST)
        sock.settimeout(DEADLINE + 5)
        try:
            answer = sock.recv(65536)  # b"" when the sweep shut the connection
        except OSError:
            answer = b""
        assert time.monotonic() - started < READ_TIMEOUT + 1.5
    assert answer == b"" or answer.startswith(b"HTTP/1.1 408")
    time.sleep(0.5)
    assert recorder.seen and all(not complete for complete, _ in recorder.seen), recorder.seen


def test_a_trickled_chunked_upload_is_cut_and_its_last_chunk_never_sent(served, token, recorder):
    sock = _open(served, token, b"Transfer-Encoding: chunked\r\n")
    with sock:
        started = time.monotonic()
        sock.sendall(b"%x\r\n%s\r\n" % (FIRST, b"c" * FIRST))
        pieces = [b"c8\r\n" + b"c" * 200 + b"\r\n"] * 200
        ended = _trickle(sock, pieces, 0.25, started + DEADLINE + 6)
        assert ended is not None and ended - started < DEADLINE + 1.5
    time.sleep(0.5)
    assert recorder.seen and all(not complete for complete, _ in recorder.seen), recorder.seen


def test_an_upload_in_time_is_forwarded_whole(served, token, recorder):
    sock = _open(served, token, b"Content-Length: %d\r\n" % BODY)
    with sock:
        sock.sendall(b"a" * FIRST)
        time.sleep(0.3)
        sock.sendall(b"a" * (BODY - FIRST))
        assert _answer(sock).startswith(b"HTTP/1.1 200")
    assert recorder.seen == [(True, BODY)]
