"""Per-org settings kept in SQL: retention days of usage records and of audit records."""

from __future__ import annotations

from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from ..store import settings
from ..store.db import Unavailable
from ..vault.connection import Vault
from . import audit, orgs
from .actor import Actor

DEFAULTS = settings.DEFAULTS


def get(vault: Vault, engine: Engine, actor: Actor, org: str) -> dict:
    """The org's settings, defaults filled in (owners and admins)."""
    actor.require("admin", org)
    orgs.get(vault, org)  # an unknown org is NotFound
    try:
        return settings.get(engine, org)
    except SQLAlchemyError:
        raise Unavailable("the database cannot be read") from None


def put(vault: Vault, engine: Engine, actor: Actor, org: str, values: dict) -> dict:
    """Set some of the org's settings (owners and admins; audited as `settings.set`)."""
    actor.require("admin", org)
    orgs.get(vault, org)
    detail = ", ".join(f"{name}={int(values[name])}" for name in DEFAULTS if name in values)
    with audit.changing(actor, "settings.set", audit.Target(org), detail=detail):
        try:
            return settings.put(engine, org, **values)
        except SQLAlchemyError:
            raise Unavailable("the database cannot be written") from None
