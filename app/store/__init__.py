"""The SQL data tier (SQLAlchemy 2 + Alembic) and the shared counters."""
