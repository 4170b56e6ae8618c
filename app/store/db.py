"""The database engine: SQLite (WAL, busy timeout) by default, PostgreSQL (psycopg 3) for several nodes.

One engine per process (its pool hands each request or job its own connection); callers open a
short transaction with `engine.begin()` and never share a connection across greenlets or threads.
"""

from __future__ import annotations

import os
import time

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import DBAPIError, OperationalError

DEFAULT_URL = "sqlite:///.data/jetpero.db"
BUSY_TIMEOUT_MS = 5000
CONNECT_TIMEOUT_S = 5


class Unavailable(Exception):
    """The database cannot be reached or refused the statement for lack of resources."""


def now_ms() -> int:
    """Epoch milliseconds: the one time format of every row (portable, indexable, bucketable)."""
    return time.time_ns() // 1_000_000


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def engine_for(url: str) -> Engine:
    """An engine for `url` (`sqlite:///path` or `postgresql+psycopg://...`); creates SQLite's folder."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            os.makedirs(os.path.dirname(os.path.abspath(parsed.database)), exist_ok=True)
        engine = create_engine(parsed, connect_args={"timeout": BUSY_TIMEOUT_MS / 1000, "check_same_thread": False})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    if parsed.get_backend_name() == "postgresql":
        return create_engine(
            parsed,
            pool_pre_ping=True,
            pool_size=5,
            max_overflow=10,
            connect_args={"connect_timeout": CONNECT_TIMEOUT_S},
        )
    raise ValueError("expected a sqlite:/// or postgresql+psycopg:// URL")


def is_unavailable(exc: BaseException) -> bool:
    """A connection-level failure (worth retrying later), as opposed to a bad statement."""
    return isinstance(exc, OperationalError) or (isinstance(exc, DBAPIError) and exc.connection_invalidated)
