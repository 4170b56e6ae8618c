"""Ports and processes for the tests, the bench and tools/openbao.py: free ports, stopping by PID.

`free_port()`: a port free on 127.0.0.1 right now; `port_in_use(port)`: something accepts
connections there; `stop(proc_or_pid, timeout, sig)`: `sig` (SIGTERM), up to `timeout` seconds,
then SIGKILL, and any child it leaves behind is killed too (checked by PID and start time).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

HOST = "127.0.0.1"
STOP_TIMEOUT = 10.0  # seconds between the signal and SIGKILL


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((HOST, port)) == 0


def _start_time(pid: int) -> str | None:
    """The process's start time (in clock ticks since boot): a PID reused later has another one."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def alive(pid: int) -> bool:
    """True while `pid` runs (reaped here if it is our child; another's zombie counts as gone)."""
    try:
        waited, _ = os.waitpid(pid, os.WNOHANG)
        if waited == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        return state != "Z"
    except (OSError, IndexError):
        return True


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _stop_pid(pid: int, sig: int, timeout: float) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return
    if not _wait_gone(pid, timeout):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            return
        _wait_gone(pid, 5)


def stop(proc: subprocess.Popen | int, timeout: float = STOP_TIMEOUT, sig: int = signal.SIGTERM) -> None:
    """Stop a process by PID: `sig`, up to `timeout` seconds, then SIGKILL; then any child it left."""
    pid = proc.pid if isinstance(proc, subprocess.Popen) else int(proc)
    if isinstance(proc, subprocess.Popen) and proc.poll() is not None:
        return
    kids = [(kid, _start_time(kid)) for kid in children(pid)]
    if isinstance(proc, subprocess.Popen):
        proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    else:
        _stop_pid(pid, sig, timeout)
    deadline = time.monotonic() + 3
    for kid, started in kids:
        while started is not None and _start_time(kid) == started:
            if time.monotonic() > deadline:
                os.kill(kid, signal.SIGKILL)
                break
            time.sleep(0.05)
