"""An audit device that cannot write: Vault refuses requests, sys/health still says 200, /readyz says 503.

OpenBao serves a request only if at least one audit device logs it, so the server here has one
device only, a `socket` one pointing at a TCP sink of ours (no file device: it would keep
logging and Vault would keep serving). Stopping the sink makes every audited request fail
("internal error") while the unaudited sys/health answers 200 "unsealed": /readyz must not
trust sys/health alone. OpenBao's socket device dials again on its next write, so restarting
the sink on the same port brings Vault, and /readyz, back by itself.
"""

from __future__ import annotations

import json
import selectors
import socket
import threading
import time
import urllib.error
import urllib.request

import pytest

from app.vault.bootstrap import bootstrap
from tests.checks import assert_clean_logs, free_port_pair
from tests.helpers import Bao
from tools import openbao, procs

READY_CACHE = 1.0  # /readyz caches its answer this long (app/health.py)


class Sink:
    """A TCP server on 127.0.0.1 that accepts connections and discards what they send.

    One thread runs a selector loop; stop() ends it, and it closes the listener and every
    client socket before it returns, so a peer writing to it gets a reset or a refusal.
    """

    def __init__(self) -> None:
        self.port = 0  # the first start picks a free port; later starts reuse it
        self.received = 0  # bytes read, over all starts
        self.accepted = 0  # connections accepted, over all starts
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()

    def start(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # rebind despite TIME_WAIT
        listener.bind(("127.0.0.1", self.port))
        listener.listen(16)
        self.port = listener.getsockname()[1]
        self._stopping.clear()
        self._thread = threading.Thread(target=self._serve, args=(listener,), name="audit-sink", daemon=True)
        self._thread.start()

    def _serve(self, listener: socket.socket) -> None:
        selector = selectors.DefaultSelector()
        selector.register(listener, selectors.EVENT_READ)
        try:
            while not self._stopping.is_set():
                for key, _ in selector.select(timeout=0.05):
                    sock = key.fileobj
                    if sock is listener:
                        conn, _ = listener.accept()
                        conn.setblocking(False)
                        selector.register(conn, selectors.EVENT_READ)
                        self.accepted += 1
                        continue
                    try:
                        data = sock.recv(65536)
                    except (BlockingIOError, InterruptedError):
                        continue
                    except OSError:
                        data = b""
                    if data:
                        self.received += len(data)
                    else:
                        selector.unregister(sock)
                        sock.close()
        finally:
            for key in list(selector.get_map().values()):
                selector.unregister(key.fileobj)
                key.fileobj.close()
            selector.close()

    def stop(self) -> None:
        if self._thread is None:
            return
        self._stopping.set()
        self._thread.join(5)
        assert not self._thread.is_alive(), "the sink thread did not stop"
        self._thread = None


@pytest.fixture
def sink():
    sink = Sink()
    sink.start()
    try:
        yield sink
    finally:
        sink.stop()


def _socket_audit(port: int) -> str:
    return f"""\
audit "socket" "sink" {{
  description = "test: audit to a TCP sink the test can stop"
  options {{
    address     = "127.0.0.1:{port}"
    socket_type = "tcp"
  }}
}}"""


@pytest.fixture
def server(tmp_path, sink):
    port = free_port_pair()
    proc, root_token = openbao.start_persistent(
        tmp_path / "bao", port, extra_config=_socket_audit(sink.port), file_audit=False
    )
    try:
        yield Bao(addr=openbao.address(port), root_token=root_token, process=proc)
    finally:
        procs.stop(proc)


def _raw(bao: Bao, path: str, token: str | None = None) -> tuple[int, dict]:
    """(status, JSON body) of one GET straight to Vault, no client library in between."""
    request = urllib.request.Request(f"{bao.addr}{path}", headers={"X-Vault-Token": token} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def _readyz(client, want: int, within: float):
    """Poll /readyz until it answers `want`, for at most `within` seconds."""
    deadline = time.monotonic() + within
    while (r := client.get("/readyz")).status_code != want:
        assert time.monotonic() < deadline, f"/readyz still {r.status_code} {r.json} after {within}s"
        time.sleep(0.1)
    return r


def test_readyz_follows_the_audit_device(make_app, tmp_path, sink, server, caplog):
    approle = str(tmp_path / "approle.json")
    bootstrap(server.root(), approle)
    app = make_app(bao=server, approle_file=approle, VAULT_TIMEOUT=1)
    try:
        client = app.test_client()
        r = client.get("/readyz")
        assert r.status_code == 200 and r.json["status"] == "ready", r.json
        assert r.json["checks"]["vault"] == "unsealed" and r.json["checks"]["transit"] == "ok"
        assert sink.accepted >= 1 and sink.received > 0  # Vault audits into the sink

        # The sink goes away: Vault refuses audited requests, its health endpoint does not notice.
        sink.stop()
        deadline = time.monotonic() + 3
        while (lookup := _raw(server, "/v1/auth/token/lookup-self", server.root_token))[0] == 200:
            assert time.monotonic() < deadline, "Vault still serves with its only audit device down"
            time.sleep(0.1)
        assert lookup == (500, {"errors": ["internal error"]}), lookup
        health = _raw(server, "/v1/sys/health")
        assert health[0] == 200 and health[1]["sealed"] is False and health[1]["initialized"] is True, health

        time.sleep(READY_CACHE + 0.1)  # past the cached "ready"
        r = client.get("/readyz")
        assert r.status_code == 503, r.json
        assert r.headers["Retry-After"].isdigit()
        assert r.json["status"] == "unavailable"
        assert r.json["checks"]["vault"] == "unsealed" and r.json["checks"]["transit"] == "failed"
        assert _raw(server, "/v1/auth/token/lookup-self", server.root_token)[0] == 500  # still refusing

        # The sink comes back on the same port: OpenBao's socket device dials it again by itself.
        accepted = sink.accepted
        sink.start()
        r = _readyz(client, 200, within=READY_CACHE + 4)
        assert r.json["status"] == "ready" and r.json["checks"]["transit"] == "ok", r.json
        assert sink.accepted > accepted  # a new connection from Vault
        assert _raw(server, "/v1/auth/token/lookup-self", server.root_token)[0] == 200
    finally:
        app.extensions["jetpero"].stop()
    assert_clean_logs(caplog.records)
