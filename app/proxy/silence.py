"""Cuts relayed response bodies whose provider stays silent longer than the read timeout.

A socket timeout would do it, but under gevent every wait on a socket with a timeout builds and
starts a `gevent.Timeout`: once per relayed SSE event, about 15% of a worker's CPU per event on
the bench. Instead the relay marks when each read begins and ends, and one sweep every `tick`
seconds shuts down the connection of any read waiting longer than the limit. The bound becomes
the read timeout plus at most one tick (a quarter of the timeout, at most one second).

The sweep runs in a daemon thread (a greenlet under gevent's patching), started with the first
body watched in the process.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time

log = logging.getLogger("jetpero.proxy")


class Watch:
    """One relayed body: `since` is when its current read began (None between reads)."""

    __slots__ = ("cut", "since", "sock")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.since: float | None = None
        self.cut = False


class Silences:
    def __init__(self, limit: float) -> None:
        self.limit = limit
        self.tick = min(1.0, limit / 4)
        self._watches: set[Watch] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._pid: int | None = None  # the process whose sweeper runs (a fork has none)

    def watch(self, sock: socket.socket) -> Watch:
        """Watch the body read from `sock`, which stops timing out itself (blocks until cut)."""
        if self._pid != os.getpid():
            self._start()
        sock.settimeout(None)
        watch = Watch(sock)
        self._watches.add(watch)
        return watch

    def forget(self, watch: Watch) -> bool:
        """Stop watching; True if the sweep cut it (its connection cannot be reused)."""
        with self._lock:  # a sweep never shuts down a connection already handed back
            self._watches.discard(watch)
        return watch.cut

    def sweep(self) -> int:
        """Cut every read waiting longer than the limit; how many were cut."""
        cut = 0
        with self._lock:
            oldest = time.monotonic() - self.limit
            for watch in list(self._watches):
                since = watch.since
                if since is not None and since < oldest:
                    self._watches.discard(watch)
                    watch.cut = True
                    cut += 1
                    try:
                        watch.sock.shutdown(socket.SHUT_RDWR)  # the waiting read fails or ends at once
                    except OSError:
                        pass  # already closed: its read has failed on its own
        if cut:
            log.warning("upstream silent past the read timeout: %d stream(s) cut", cut)
        return cut

    def stop(self) -> None:
        self._stop.set()

    def _start(self) -> None:
        with self._lock:
            if self._pid == os.getpid():
                return
            self._pid = os.getpid()
        threading.Thread(target=self._run, name="jetpero-silences", daemon=True).start()

    def _run(self) -> None:
        while not self._stop.wait(self.tick):
            try:
                self.sweep()
            except Exception as exc:  # noqa: BLE001 - the sweeper must survive anything
                log.error("silence sweep failed: %s", type(exc).__name__)
