"""A real Redis for the counter tests: the machine's `redis-server` on a free port, or `JETPERO_TEST_REDIS_URL`.

Without either the tests that need it are skipped with the reason, unless
`JETPERO_REQUIRE_SERVICES=1` (CI), where a missing Redis is a failure.

- `redis_url` (session): a server shared by the tests; they keep apart by their own keys.
- `disposable_redis` (per test): a server of the test's own, which it may stop (`.stop()`).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from app.store.redis_counters import RedisCounters
from app.store.sqlite_counters import SQLiteCounters
from tests.helpers import missing
from tests.servers import free_port


@dataclass
class RedisServer:
    url: str
    process: subprocess.Popen | None

    def stop(self) -> None:
        """Stop the server by its PID (and wait until its port is closed)."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


def start_redis(workdir: Path) -> RedisServer:
    """Start the machine's redis-server on a free loopback port, nothing persisted; raise when absent."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise FileNotFoundError("redis-server is not installed (apt-get install -y redis-server)")
    port = free_port()
    args = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    args += ["--dir", str(workdir), "--logfile", str(workdir / "redis.log")]
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    server = RedisServer(f"redis://127.0.0.1:{port}/0", process)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            if redis.Redis(port=port, socket_timeout=0.5).ping():
                return server
        except (OSError, redis.RedisError):
            time.sleep(0.05)
        if process.poll() is not None:
            break
    server.stop()
    raise RuntimeError(f"redis-server did not start on port {port}; see {workdir / 'redis.log'}")


def _own_server(tmp_path_factory: pytest.TempPathFactory) -> RedisServer:
    try:
        return start_redis(tmp_path_factory.mktemp("redis"))
    except (FileNotFoundError, RuntimeError) as exc:
        missing(str(exc))
        raise


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory):
    url = os.environ.get("JETPERO_TEST_REDIS_URL")
    if url:
        try:
            redis.Redis.from_url(url, socket_timeout=1).ping()
        except redis.RedisError as exc:
            missing(f"JETPERO_TEST_REDIS_URL does not answer: {type(exc).__name__}")
        yield url
        return
    server = _own_server(tmp_path_factory)
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def disposable_redis(tmp_path_factory):
    server = _own_server(tmp_path_factory)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(params=["embedded", "redis"])
def store(request, tmp_path):
    """A counter store of each kind: the embedded one in a temp file, then Redis."""
    if request.param == "embedded":
        return SQLiteCounters(str(tmp_path / "counters.sqlite3"))
    return RedisCounters(request.getfixturevalue("redis_url"))
