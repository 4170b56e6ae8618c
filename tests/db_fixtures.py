"""Database fixtures: every storage test runs on SQLite and on a real PostgreSQL.

`database_url` is parametrized over `sqlite` (a fresh file) and `postgresql` (a fresh schema,
dropped afterwards, on the server at `JETPERO_TEST_POSTGRES_URL`, default
postgresql+psycopg://postgres@127.0.0.1:5432/test). Without a PostgreSQL server those tests are
skipped, naming why; with JETPERO_REQUIRE_SERVICES=1 (CI) they fail instead.
`engine` is a migrated engine on that database.
"""

from __future__ import annotations

import os
import uuid

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from app.store import migrate
from app.store.db import engine_for
from tests.helpers import missing

POSTGRES_URL = os.environ.get("JETPERO_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def _postgres_or_skip() -> None:
    try:
        with create_engine(POSTGRES_URL, connect_args={"connect_timeout": 3}).connect():
            return
    except OperationalError as exc:
        reason = f"no PostgreSQL answers at {make_url(POSTGRES_URL).render_as_string()}: {exc.orig}"
    missing(reason)


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path):
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'jetpero.db'}"
        return
    _postgres_or_skip()
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    url = make_url(POSTGRES_URL).update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


@pytest.fixture
def engine(database_url):
    migrate.upgrade(database_url)
    engine = engine_for(database_url)
    yield engine
    engine.dispose()
