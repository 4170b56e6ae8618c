"""Per-org settings kept in SQL (not secrets): retention days of usage and audit records."""

from __future__ import annotations

from sqlalchemy import delete, insert, select, update
from sqlalchemy.engine import Engine

from .schema import org_settings

DEFAULTS = {"usage_retention_days": 90, "audit_retention_days": 365}


def get(engine: Engine, org: str) -> dict:
    with engine.connect() as conn:
        row = conn.execute(select(org_settings).where(org_settings.c.org == org)).mappings().first()
    return {name: row[name] for name in DEFAULTS} if row else dict(DEFAULTS)


def put(engine: Engine, org: str, **values: int) -> dict:
    """Set some of an org's settings (the others keep their value or default)."""
    merged = {**get(engine, org), **{k: int(v) for k, v in values.items() if k in DEFAULTS}}
    with engine.begin() as conn:
        if not conn.execute(update(org_settings).where(org_settings.c.org == org).values(merged)).rowcount:
            conn.execute(insert(org_settings).values(org=org, **merged))
    return merged


def all_orgs(engine: Engine) -> dict[str, dict]:
    with engine.connect() as conn:
        rows = conn.execute(select(org_settings)).mappings().all()
    return {row["org"]: {name: row[name] for name in DEFAULTS} for row in rows}


def forget(engine: Engine, org: str) -> None:
    with engine.begin() as conn:
        conn.execute(delete(org_settings).where(org_settings.c.org == org))
