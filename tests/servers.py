"""Real network servers for the data-plane tests.

- `LiveServer`: a Flask app served by werkzeug in a thread (what the official SDKs need), its
  answers always closed (PEP 3333), which werkzeug's own handler can skip.
- `Gunicorn`: the served configuration itself (gunicorn.conf.py, gevent workers) as a subprocess.
- `Listener`: a TCP port that counts every connection made to it ("nothing went there").
- `TlsUpstream`: an HTTPS server with a self-signed certificate for 127.0.0.1.
- `RawUpstream`: answers fixed raw bytes (a truncated or stalled response).
"""

from __future__ import annotations

import datetime
import http.server
import ipaddress
import os
import re
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from werkzeug.serving import WSGIRequestHandler, make_server

from tools.procs import free_port, stop

ROOT = Path(__file__).resolve().parent.parent


class _Served:
    """A socketserver-style server run in a daemon thread until `stop()`."""

    def _serve(self, server, url: str) -> None:
        server.daemon_threads = True
        self._server, self.url = server, url
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


_ANSWER = "tests.live.answer"  # environ key: the app's answer, as `_ClosedOnce`


class _ClosedOnce:
    """The app's answer (its WSGI iterable), whose close() runs once however often it is called."""

    def __init__(self, body) -> None:
        self._body, self._closed = body, False

    def __iter__(self):
        return iter(self._body)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            close = getattr(self._body, "close", None)
            if close is not None:
                close()


class _ClosingHandler(WSGIRequestHandler):
    """werkzeug's handler, and the answer closed after it whatever happened (PEP 3333: the server
    must call close(); a proxied call is settled there). werkzeug's own skips it when the client
    resets the connection at the end of a chunked answer: after the last chunk it drains the
    socket for 10 ms, and that read raises ECONNRESET before its close(). The openai SDK stops
    reading at `data: [DONE]` and closes its connection: if the final `0\r\n\r\n` is in by then,
    unread, the close is a reset, and the streamed call was never settled (no usage record)."""

    def run_wsgi(self) -> None:
        try:
            super().run_wsgi()
        finally:
            answer = getattr(self, "environ", {}).get(_ANSWER)
            if answer is not None:
                answer.close()


class LiveServer(_Served):
    """The Flask app over real HTTP (werkzeug's threaded server), each answer closed once."""

    def __init__(self, app):
        def closed_once(environ, start_response):
            answer = environ[_ANSWER] = _ClosedOnce(app(environ, start_response))
            return answer

        server = make_server("127.0.0.1", 0, closed_once, threaded=True, request_handler=_ClosingHandler)
        self._serve(server, f"http://127.0.0.1:{server.server_port}")


class Listener:
    """Accepts connections, counts them, reads what they send, answers nothing."""

    def __init__(self):
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)
        self._sock.settimeout(0.05)
        self.port = self._sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.connections = 0
        self.received = b""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except (TimeoutError, OSError):
                continue
            self.connections += 1
            with conn:
                conn.settimeout(0.2)
                try:
                    self.received += conn.recv(65536)
                except OSError:
                    pass

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._sock.close()


class RawUpstream:
    """Answers every request with the same raw bytes, then hangs up or (close=False) goes silent."""

    def __init__(self, reply: bytes, *, close: bool):
        self._reply, self._close = reply, close
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)
        self._sock.settimeout(0.05)
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}"
        self.requests = 0
        self._held: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except (TimeoutError, OSError):
                continue
            conn.settimeout(2)
            data = b""
            try:
                while b"\r\n\r\n" not in data and (chunk := conn.recv(65536)):
                    data += chunk
                head, _, body = data.partition(b"\r\n\r\n")
                length = re.search(rb"(?im)^content-length:\s*(\d+)", head)
                while length and len(body) < int(length[1]) and (chunk := conn.recv(65536)):
                    body += chunk  # read whole: a close with unread bytes resets the connection
                self.requests += 1
                conn.sendall(self._reply)
            except OSError:
                pass
            if self._close:
                conn.close()
            else:
                self._held.append(conn)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        for conn in self._held:
            conn.close()
        self._sock.close()


def self_signed_cert(directory: Path) -> tuple[Path, Path]:
    """(cert.pem, key.pem) for CN/SAN 127.0.0.1, valid for a day."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


class TlsUpstream(_Served):
    """HTTPS on 127.0.0.1 with a self-signed certificate; counts the HTTP requests it served."""

    def __init__(self, directory: Path):
        self.cert, key = self_signed_cert(directory)
        self.requests = 0
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                outer.requests += 1
                body = b'{"tls": true}'
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert, key)
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.socket = context.wrap_socket(server.socket, server_side=True)
        self._serve(server, f"https://127.0.0.1:{server.server_address[1]}")


class Gunicorn:
    """`gunicorn -c gunicorn.conf.py wsgi:app` with gevent workers, configured by environment."""

    def __init__(self, env: dict[str, str], log_path: Path, workers: int = 2):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        environ = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("VAULT_", "JETPERO_", "HTTP_PROXY", "HTTPS_PROXY"))
        }
        environ.update(env, JETPERO_BIND=f"127.0.0.1:{self.port}", JETPERO_WORKERS=str(workers))
        self.log_path = log_path
        with open(log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"],
                cwd=ROOT,
                env=environ,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self._wait()

    def _wait(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gunicorn exited: {self.log_path.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{self.url}/healthz", timeout=1) as response:
                    if response.status == 200:
                        return
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"gunicorn did not start: {self.log_path.read_text()[-2000:]}")

    def stop(self) -> None:
        stop(self.process, timeout=15)  # by PID: gunicorn's arbiter stops its own workers
