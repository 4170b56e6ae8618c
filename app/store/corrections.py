"""Budget corrections due: what settle owes the counter store, carried by the next take.

A settlement without a stream lease only corrects reservations to the real spend. Rather than a
round trip of its own, its corrections wait here, merged per counter, for the process's next
store call that can carry them (`carried()`: a take applies them first, in its own round trip),
or for the background flush `SETTLE_DELAY` seconds later when none comes. A round trip that
fails puts them back, unless it may have been carried out (`maybe_applied`: a timeout after the
send), since a correction applied twice would give the spend back twice while a lost one only
leaves its reservation standing. At most `MAX_DUE` counters wait while the store is down.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

log = logging.getLogger("jetpero.limits")
SETTLE_DELAY = 0.05  # seconds a budget correction may wait for the next take before it is sent alone
MAX_DUE = 100_000  # corrections kept while the store is down; past it the oldest are dropped (they stand)
Adjustment = tuple[str, int, int]  # (key, delta, ttl s)


class Corrections:
    """One store's corrections due. `send(due)` sends them in a round trip of their own (raising
    one of `down` when the store fails); `maybe_applied(exc)` tells a failure that may have landed."""

    def __init__(
        self,
        send: Callable[[list[Adjustment]], None],
        maybe_applied: Callable[[BaseException], bool],
        down: tuple[type[BaseException], ...],
    ) -> None:
        self._send, self._maybe_applied, self._down = send, maybe_applied, down
        self._due: dict[str, list[int]] = {}  # key -> [delta, ttl]
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._flusher_pid: int | None = None

    def add(self, adjustments: list[Adjustment]) -> None:
        """Owe `adjustments`; the flusher sends them unless a take carries them first."""
        self._merge(adjustments)
        if not self._wake.is_set():  # set() takes a lock and notifies: once per flush is enough
            self._wake.set()
        if self._flusher_pid != os.getpid():  # the first deferred settle of this process (or after a fork)
            self._start_flusher()

    @contextmanager
    def carried(self) -> Iterator[list[Adjustment]]:
        """The corrections due, for one round trip to carry; put back if it fails (see above)."""
        due = self.claim()
        try:
            yield due
        except BaseException as exc:
            if not self._maybe_applied(exc):
                self._merge(due)
            elif due:
                log.warning(
                    "counter store: %d budget corrections dropped (%s): they may have been applied",
                    len(due),
                    type(exc).__name__,
                )
            raise

    def flush(self) -> None:
        """Send every correction due now, in a round trip of their own."""
        with self.carried() as due:
            if due:
                self._send(due)

    def claim(self) -> list[Adjustment]:
        """Take every correction due (the caller sends them or puts them back)."""
        if not self._due:
            return []
        with self._lock:
            due, self._due = self._due, {}
        return [(key, delta, ttl) for key, (delta, ttl) in due.items() if delta]

    def _merge(self, adjustments: list[Adjustment]) -> None:
        """Per key: deltas add up, the longest ttl wins."""
        if not adjustments:
            return
        with self._lock:
            due = self._due
            for key, delta, ttl in adjustments:
                if (entry := due.get(key)) is None:
                    if len(due) >= MAX_DUE:
                        log.warning("counter store: too many budget corrections due; the oldest is dropped")
                        del due[next(iter(due))]
                    due[key] = [delta, ttl]
                else:
                    entry[0] += delta
                    entry[1] = max(entry[1], ttl)

    def _start_flusher(self) -> None:
        with self._lock:
            if self._flusher_pid == os.getpid():
                return
            self._flusher_pid = os.getpid()
        threading.Thread(target=self._flush_loop, name="counter-settle", daemon=True).start()
        atexit.register(self._flush_at_exit)

    def _flush_loop(self) -> None:
        """Wait for a deferred correction, give the next take `SETTLE_DELAY` to carry it, then send what is left."""
        while True:
            self._wake.wait()
            self._wake.clear()
            time.sleep(SETTLE_DELAY)
            try:
                self.flush()
            except self._down:
                log.warning("counter store unavailable at settle: the corrections wait, their reservations stand")
                time.sleep(1.0)
                self._wake.set()
            except Exception as exc:  # noqa: BLE001 - the flusher must survive anything
                log.error("counter settle flush failed: %s", type(exc).__name__)

    def _flush_at_exit(self) -> None:
        try:
            self.flush()
        except self._down:
            log.warning("counter store unavailable at exit: %d budget corrections not sent", len(self._due))
