"""The sweep that times relayed bodies' reads: it cuts a read waiting past the limit, and only that.

Real sockets and threads; the proxy's use of it is tested in test_proxy and test_streaming."""

from __future__ import annotations

import socket
import ssl
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from app.proxy.silence import Silences
from tests.servers import self_signed_cert

ROOT = Path(__file__).resolve().parent.parent


class Reader(threading.Thread):
    """Reads `sock` once, as the relay does, noting what came back and when."""

    def __init__(self, sock: socket.socket, watch) -> None:
        super().__init__(daemon=True)
        self.sock, self.watch = sock, watch
        self.result: bytes | Exception | None = None
        self.took = 0.0

    def run(self) -> None:
        started = self.watch.since = time.monotonic()
        try:
            self.result = self.sock.recv(100)
        except OSError as exc:
            self.result = exc
        self.watch.since = None
        self.took = time.monotonic() - started


@pytest.fixture
def silences():
    watched = Silences(limit=0.4)
    yield watched
    watched.stop()


@pytest.fixture
def pair():
    ours, theirs = socket.socketpair()
    yield ours, theirs
    ours.close()
    theirs.close()


def test_a_read_silent_past_the_limit_is_cut(silences, pair):
    ours, _theirs = pair
    watch = silences.watch(ours)
    reader = Reader(ours, watch)
    reader.start()
    reader.join(timeout=5)
    assert not reader.is_alive()
    assert reader.result == b""  # the end of data: the relay treats it as cut short
    assert silences.limit <= reader.took <= silences.limit + silences.tick + 0.5, reader.took
    assert watch.cut and silences.forget(watch)


def test_reads_that_get_data_in_time_and_idle_bodies_are_left_alone(silences, pair):
    ours, theirs = pair
    reading, idle = silences.watch(ours), silences.watch(theirs)
    for _ in range(4):  # 4 x 0.2 s: longer than the limit in all, shorter each time
        reader = Reader(ours, reading)
        reader.start()
        time.sleep(0.2)
        theirs.sendall(b"event")
        reader.join(timeout=5)
        assert reader.result == b"event"
    assert silences.sweep() == 0
    assert not reading.cut and not idle.cut  # idle: between reads (the client is slow to take it)
    assert not silences.forget(reading)
    assert not silences.forget(idle)


def test_a_forgotten_watch_is_never_cut(silences, pair):
    ours, theirs = pair
    watch = silences.watch(ours)
    watch.since = time.monotonic() - 10  # as if its read had hung
    assert not silences.forget(watch)
    assert silences.sweep() == 0
    theirs.sendall(b"still usable")
    assert ours.recv(100) == b"still usable"


def test_a_tls_read_is_cut(silences, tmp_path):
    cert, key = self_signed_cert(tmp_path)
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(cert, key)
    listener = socket.create_server(("127.0.0.1", 0))
    accepted: list[ssl.SSLSocket] = []

    def accept() -> None:
        conn, _ = listener.accept()
        accepted.append(server_context.wrap_socket(conn, server_side=True))  # then says nothing

    server = threading.Thread(target=accept, daemon=True)
    server.start()
    client_context = ssl.create_default_context(cafile=str(cert))
    client = client_context.wrap_socket(socket.create_connection(listener.getsockname()), server_hostname="127.0.0.1")
    try:
        server.join(timeout=5)
        watch = silences.watch(client)
        reader = Reader(client, watch)
        reader.start()
        reader.join(timeout=5)
        assert not reader.is_alive()
        assert reader.result == b"" or isinstance(reader.result, ssl.SSLError), reader.result
        assert watch.cut
    finally:
        client.close()
        for conn in accepted:
            conn.close()
        listener.close()


def test_the_sweeper_runs_in_each_process_that_watches(silences, pair):
    ours, theirs = pair
    silences.watch(ours)
    assert any(t.name == "jetpero-silences" and t.is_alive() for t in threading.enumerate())
    silences._pid = -1  # as in a forked child: the parent's sweeper thread is not there
    silences.watch(theirs)
    assert sum(t.name == "jetpero-silences" and t.is_alive() for t in threading.enumerate()) >= 2


GEVENT_TLS_CUT = """
from gevent import monkey

monkey.patch_all()

import socket, ssl, sys, time

import gevent

from app.proxy.silence import Silences

cert, key = sys.argv[1], sys.argv[2]
server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
server_context.load_cert_chain(cert, key)
listener = socket.create_server(("127.0.0.1", 0))
accepted = []
server = gevent.spawn(lambda: accepted.append(server_context.wrap_socket(listener.accept()[0], server_side=True)))
client = ssl.create_default_context(cafile=cert).wrap_socket(
    socket.create_connection(listener.getsockname()), server_hostname="127.0.0.1"
)
server.join()
silences = Silences(limit=0.3)
watch = silences.watch(client)
watch.since = time.monotonic()
try:
    outcome = "end-of-data" if client.recv(100) == b"" else "data"
except OSError:  # gevent wakes the read with its "closed in another greenlet" error
    outcome = "oserror"
except Exception as exc:
    outcome = type(exc).__name__
print(outcome, watch.cut, flush=True)
"""


def test_under_gevent_a_tls_read_is_cut_as_an_end_of_data(tmp_path):
    """As gunicorn's workers run it: the waiting read is a greenlet's, the sweep another's. The read
    fails with an OSError, which the relay (through urllib3) takes as the body cut short; not with
    the ValueError of a TLS socket read after its TLS state is gone."""
    cert, key = self_signed_cert(tmp_path)
    done = subprocess.run(
        [sys.executable, "-c", GEVENT_TLS_CUT, str(cert), str(key)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    outcome, cut = done.stdout.split()
    assert outcome in ("end-of-data", "oserror") and cut == "True", done.stdout
