"""The Redis counter store (`JETPERO_REDIS_URL`): exact across every worker of every node.

Windows through `limits`' RedisStorage, in its key layout; `take` as one Lua script (`_TAKE`),
settle as one pipeline, both over connections of the store's own (`_Connections`). See
`counters.py` for the interface.
"""

from __future__ import annotations

import os
import time

import redis
from limits.storage import RedisStorage
from redis.backoff import NoBackoff
from redis.retry import Retry

from .corrections import Adjustment
from .counters import Budget, CounterStore, Lease, Window

_RESERVE = """
local used = tonumber(redis.call('GET', KEYS[1]) or '0')
local amount, limit = tonumber(ARGV[1]), tonumber(ARGV[2])
if used >= limit or used + amount > limit then return {0, used} end
used = redis.call('INCRBY', KEYS[1], amount)
redis.call('EXPIRE', KEYS[1], ARGV[3])
return {1, used}
"""
_ADJUST = """
local value = redis.call('INCRBY', KEYS[1], ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[2])
return value
"""
_TAKE = """
-- KEYS: the windows' keys, then the leases', then the budgets', then the due corrections'.
-- ARGV: now (the client's time, as the limits library's own hit), #windows, #leases, #budgets,
-- #corrections, then (limit, expiry) per window, (lease, limit, ttl) per lease, (amount, limit,
-- ttl) per budget, (delta, ttl) per correction. The corrections (earlier calls' settlements) are
-- applied first, whatever the checks then answer.
local now = tonumber(ARGV[1])
local nw, nl, nb, nd = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local a, t = 6 + 2 * nw + 3 * nl + 3 * nb, 0
for i = nw + nl + nb + 1, nw + nl + nb + nd do
  redis.call('INCRBY', KEYS[i], ARGV[a])
  redis.call('EXPIRE', KEYS[i], ARGV[a + 1])
  a = a + 2
end
a = 6
for i = 1, nw do
  local entry = redis.call('LINDEX', KEYS[i], tonumber(ARGV[a]) - 1)
  if entry and tonumber(entry) >= now - tonumber(ARGV[a + 1]) then return {i, entry} end
  a = a + 2
end
if nl > 0 then
  local time = redis.call('TIME')
  t = tonumber(time[1]) + tonumber(time[2]) / 1000000
end
for i = nw + 1, nw + nl do
  redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', t)  -- lapsed leases only: nothing live is given back
  if redis.call('ZCARD', KEYS[i]) >= tonumber(ARGV[a + 1]) then return {i, '0'} end
  a = a + 3
end
for i = nw + nl + 1, nw + nl + nb do
  local value = redis.call('GET', KEYS[i]) or '0'
  local used, amount, limit = tonumber(value), tonumber(ARGV[a]), tonumber(ARGV[a + 1])
  if used >= limit or used + amount > limit then return {i, value} end
  a = a + 3
end
a = 6
for i = 1, nw do
  local limit = tonumber(ARGV[a])
  redis.call('LPUSH', KEYS[i], now)
  redis.call('LTRIM', KEYS[i], 0, limit - 1)
  redis.call('EXPIRE', KEYS[i], ARGV[a + 1])
  a = a + 2
end
for i = nw + 1, nw + nl do
  local ttl = tonumber(ARGV[a + 2])
  redis.call('ZADD', KEYS[i], t + ttl, ARGV[a])
  redis.call('EXPIRE', KEYS[i], math.ceil(ttl))
  a = a + 3
end
for i = nw + nl + 1, nw + nl + nb do
  redis.call('INCRBY', KEYS[i], ARGV[a])
  redis.call('EXPIRE', KEYS[i], ARGV[a + 2])
  a = a + 3
end
return 0
"""
_ACQUIRE = """
local now = redis.call('TIME')
local t = tonumber(now[1]) + tonumber(now[2]) / 1000000
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', t)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then return 0 end
redis.call('ZADD', KEYS[1], t + tonumber(ARGV[3]), ARGV[1])
redis.call('EXPIRE', KEYS[1], math.ceil(tonumber(ARGV[3])))
return 1
"""


class _Connections:
    """A lean path to Redis for the hot path's two calls (`take`, `settle`): connections of our own.

    redis-py's pool checks each connection it hands out for unread data (`can_read`, a poll);
    under gevent that poll alone costs several times a loopback round trip. These connections
    are only ever put back after every reply was read, so the check is not needed: a call takes
    one (LIFO), sends its commands in one write, reads every reply and puts it back, or drops it
    on any socket error. A reused connection the server closed meanwhile is replaced once (a
    read timeout is not retried: the script may have run). Same settings as the `limits`
    storage's client (timeouts, database, credentials).
    """

    IDLE = 64  # connections kept per process; more are closed once used

    def __init__(self, pool: redis.ConnectionPool):
        self.make = lambda: pool.connection_class(**pool.connection_kwargs)
        self.idle: list = []
        self.pid = os.getpid()

    def run(self, commands: list[tuple]) -> list:
        """The replies to `commands` (an error reply is returned as its ResponseError)."""
        if self.pid != os.getpid():  # forked: the parent's sockets are not ours
            self.idle, self.pid = [], os.getpid()
        while True:
            try:
                conn, reused = self.idle.pop(), True
            except IndexError:
                conn, reused = self.make(), False
            try:
                conn.send_packed_command(conn.pack_commands(commands), check_health=False)
                replies = []
                for _ in commands:
                    try:
                        replies.append(conn.read_response())
                    except redis.ResponseError as exc:  # the connection stays in step
                        replies.append(exc)
            except redis.TimeoutError:
                conn.disconnect()
                raise
            except (redis.ConnectionError, OSError):
                conn.disconnect()
                if reused:  # closed while idle (a restarted server): so are the others
                    while self.idle:
                        try:
                            self.idle.pop().disconnect()
                        except IndexError:  # another thread took the last one
                            break
                    continue
                raise
            except BaseException:
                conn.disconnect()
                raise
            if len(self.idle) < self.IDLE:
                self.idle.append(conn)
            else:
                conn.disconnect()
            return replies


class RedisCounters(CounterStore):
    """Redis (or Valkey) through `limits`' RedisStorage, plus three Lua scripts of our own."""

    NAME = "redis"
    PREFIX = "jetpero"

    def __init__(self, url: str, timeout: float = 0.5):
        self.storage = RedisStorage(
            url,
            key_prefix=f"{self.PREFIX}-windows",
            wrap_exceptions=True,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 1),  # one reconnect (a stale pooled connection), then CounterStoreUnavailable
        )
        self.client = self.storage.get_connection()
        self._reserve_script = self.client.register_script(_RESERVE)
        self._adjust_script = self.client.register_script(_ADJUST)
        self._acquire_script = self.client.register_script(_ACQUIRE)
        self._take_script = self.client.register_script(_TAKE)
        self._lean = _Connections(self.client.connection_pool)
        self._window_prefix = self.storage.prefixed_key("")
        super().__init__()

    def _key(self, key: str) -> str:
        return f"{self.PREFIX}:{key}"

    @staticmethod
    def _maybe_applied(exc: BaseException) -> bool:
        # A timeout waits for a reply to what was sent: the script may have run. (A SQLite error
        # rolls its transaction back, so the embedded store's failures are never ambiguous.)
        return isinstance(exc, redis.TimeoutError)

    def _take(
        self, windows: list[Window], leases: list[Lease], budgets: list[Budget], due: list[Adjustment]
    ) -> tuple[int, float] | None:
        keys = [self._window_prefix + key for key, _, _ in windows]
        args: list = [time.time(), len(windows), len(leases), len(budgets), len(due)]
        for _, limit, expiry in windows:
            args += (limit, expiry)
        for key, lease, limit, ttl in leases:
            keys.append(f"{self.PREFIX}:{key}")
            args += (lease, limit, ttl)
        for key, amount, limit, ttl in budgets:
            keys.append(f"{self.PREFIX}:{key}")
            args += (amount, limit, ttl)
        for key, delta, ttl in due:
            keys.append(f"{self.PREFIX}:{key}")
            args += (delta, ttl)
        script = self._take_script
        (answer,) = self._lean.run([("EVALSHA", script.sha, len(keys), *keys, *args)])
        if isinstance(answer, redis.exceptions.NoScriptError):  # a restarted or flushed server
            (answer,) = self._lean.run([("EVAL", script.script, len(keys), *keys, *args)])
        if isinstance(answer, Exception):
            raise answer
        if answer == 0:
            return None
        index = int(answer[0]) - 1
        return index, float(answer[1]) if index < len(windows) else int(answer[1])

    def _reserve(self, key: str, amount: int, limit: int, ttl: int) -> tuple[bool, int]:
        taken, value = self._reserve_script([self._key(key)], [amount, limit, ttl])
        return bool(taken), int(value)

    def _adjust(self, key: str, delta: int, ttl: int) -> int:
        return int(self._adjust_script([self._key(key)], [delta, ttl]))

    def _acquire(self, key: str, lease: str, limit: int, ttl: float) -> bool:
        return bool(self._acquire_script([self._key(key)], [lease, limit, ttl]))

    def _settle(self, leases: list[tuple[str, str]], adjustments: list[Adjustment]) -> None:
        commands: list[tuple] = [("ZREM", f"{self.PREFIX}:{key}", lease) for key, lease in leases]
        for key, delta, ttl in adjustments:  # plain commands: a script in a pipeline costs a SCRIPT EXISTS first
            commands += (("INCRBY", f"{self.PREFIX}:{key}", delta), ("EXPIRE", f"{self.PREFIX}:{key}", ttl))
        for reply in self._lean.run(commands):  # one pipeline: one write, every reply read
            if isinstance(reply, Exception):
                raise reply
