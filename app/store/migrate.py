"""Migrations run from code: `upgrade(url)` brings any database to the newest schema (idempotent)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy.exc import DBAPIError

from .db import engine_for

SCRIPTS = Path(__file__).with_name("migrations")
ATTEMPTS = 5
_one_at_a_time = threading.Lock()  # alembic's `context` is process-global


def alembic_config() -> AlembicConfig:
    config = AlembicConfig()
    config.set_main_option("script_location", str(SCRIPTS))
    return config


def upgrade(url: str) -> None:
    """Migrate the database at `url` to head; safe to run from several workers or nodes at once.

    PostgreSQL serialises concurrent runs with an advisory lock; SQLite's writers may collide
    (busy, or a table another process just created), so a failed run is retried.
    """
    engine = engine_for(url)
    try:
        for attempt in range(ATTEMPTS):
            try:
                with _one_at_a_time, engine.begin() as connection:
                    config = alembic_config()
                    config.attributes["connection"] = connection
                    command.upgrade(config, "head")
                return
            except DBAPIError:
                if attempt == ATTEMPTS - 1:
                    raise
                time.sleep(0.2 * (attempt + 1))
    finally:
        engine.dispose()
