"""Cuts relayed response bodies whose provider stays silent longer than the read timeout.

A socket timeout would do it, but under gevent every wait on a socket with a timeout builds and
starts a `gevent.Timeout`: once per relayed SSE event, about 15% of a worker's CPU per event on
the bench. Instead the relay marks when each read begins and ends (on a `Watch`), and one sweep
every `tick` seconds shuts down the connection of any read waiting longer than the limit. The
bound becomes the read timeout plus at most one tick (a quarter of the timeout, at most one
second). The wait for an answer's head keeps its socket timeout: one `gevent.Timeout` per call
costs about what a watch does.

The sweep runs in a daemon thread (a greenlet under gevent's patching), started with the first
watch in the process.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time

log = logging.getLogger("jetpero.proxy")


class Watch:
    """One relayed body (or one upload): `since` is when its current read began (None between
    reads); a read still waiting at `until` (the call's deadline) is cut too."""

    __slots__ = ("cut", "since", "sock", "until")

    def __init__(self, sock: socket.socket, until: float) -> None:
        self.sock = sock
        self.since: float | None = None
        self.until = until
        self.cut = False


class Silences:
    """The open watches of one process. No lock on the way of a call: a watch is claimed by whoever
    pops it from the dict first (one atomic operation), the relay when done or the sweep to cut it,
    so a connection handed back to the pool is never shut down by a late sweep."""

    def __init__(self, limit: float) -> None:
        self.limit = limit
        self.tick = min(1.0, limit / 4)
        self._watches: dict[Watch, bool] = {}
        self._start_lock = threading.Lock()
        self._stop = threading.Event()
        self._pid: int | None = None  # the process whose sweeper runs (a fork has none)

    def watch(self, sock: socket.socket, until: float = float("inf")) -> Watch:
        """Watch reads from `sock` (whose own timeout the caller lifts): set `since` as each begins."""
        if self._pid != os.getpid():
            self._start()
        watch = Watch(sock, until)
        self._watches[watch] = True
        return watch

    def forget(self, watch: Watch) -> bool:
        """Stop watching; True if the sweep cut it first (its connection cannot be reused)."""
        return self._watches.pop(watch, None) is None

    def sweep(self) -> int:
        """Cut every read waiting longer than the limit; how many were cut."""
        cut = 0
        now = time.monotonic()
        oldest = now - self.limit
        for watch in list(self._watches):
            since = watch.since
            late = since is not None and (since < oldest or now >= watch.until)
            if late and self._watches.pop(watch, None) is not None:
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
        with self._start_lock:
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
