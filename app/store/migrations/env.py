"""Alembic's environment: run by `app.store.migrate.upgrade`, on the connection it passes."""

from __future__ import annotations

from alembic import context

from app.store.schema import metadata

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata, transactional_ddl=True)
with context.begin_transaction():
    if connection.dialect.name == "postgresql":  # several nodes starting at once: one migrates
        context.execute("SELECT pg_advisory_xact_lock(727011)")
    context.run_migrations()
