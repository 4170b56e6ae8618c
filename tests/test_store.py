"""The data tier: migrations reach the declared schema, idempotently; leases and settings."""

from __future__ import annotations

import subprocess
import sys
import threading

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from app.store import leases, migrate, settings
from app.store.db import engine_for
from app.store.schema import metadata


def _diff(engine) -> list:
    with engine.connect() as conn:
        return compare_metadata(MigrationContext.configure(conn), metadata)


def test_a_fresh_database_migrates_to_the_declared_schema(database_url):
    migrate.upgrade(database_url)
    engine = engine_for(database_url)
    try:
        assert _diff(engine) == []
        assert set(inspect(engine).get_table_names()) >= {t.name for t in metadata.sorted_tables}
    finally:
        engine.dispose()


def test_upgrading_again_and_from_an_earlier_revision_ends_in_the_same_schema(database_url):
    migrate.upgrade(database_url)
    migrate.upgrade(database_url)  # idempotent: already at head
    engine = engine_for(database_url)
    try:
        with engine.begin() as conn:
            config = migrate.alembic_config()
            config.attributes["connection"] = conn
            command.downgrade(config, "base")
        assert "audit_records" not in inspect(engine).get_table_names()
        migrate.upgrade(database_url)
        assert _diff(engine) == []
    finally:
        engine.dispose()


def test_workers_migrating_at_once_all_succeed(database_url):
    """gunicorn workers (processes) each migrate at start: all succeed, one schema results."""
    code = "import sys; from app.store import migrate; migrate.upgrade(sys.argv[1])"
    workers = [subprocess.Popen([sys.executable, "-c", code, database_url]) for _ in range(4)]
    assert [worker.wait(120) for worker in workers] == [0, 0, 0, 0]
    engine = engine_for(database_url)
    try:
        assert _diff(engine) == []
    finally:
        engine.dispose()


def test_a_lease_has_one_holder_until_it_expires(engine):
    assert leases.acquire(engine, "job", "node-a", 60)
    assert not leases.acquire(engine, "job", "node-b", 60)
    assert leases.acquire(engine, "job", "node-a", 60)  # renewal by its holder
    assert leases.acquire(engine, "other-job", "node-b", 60)


def test_an_expired_lease_can_be_taken(engine):
    assert leases.acquire(engine, "job", "node-a", 0.001)
    threading.Event().wait(0.01)
    assert leases.acquire(engine, "job", "node-b", 60)


def test_org_settings_default_and_override(engine):
    assert settings.get(engine, "acme") == {"usage_retention_days": 90, "audit_retention_days": 365}
    settings.put(engine, "acme", usage_retention_days=7)
    assert settings.get(engine, "acme") == {"usage_retention_days": 7, "audit_retention_days": 365}
    settings.put(engine, "acme", audit_retention_days=30)
    assert settings.all_orgs(engine) == {"acme": {"usage_retention_days": 7, "audit_retention_days": 30}}
