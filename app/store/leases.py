"""Leases for periodic jobs: with several nodes, one holder runs a job until its lease expires."""

from __future__ import annotations

from sqlalchemy import insert, or_, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from .db import now_ms
from .schema import job_leases


def acquire(engine: Engine, name: str, holder: str, seconds: float) -> bool:
    """Take (or renew) the lease `name` for `seconds`; False while another holder has it."""
    now = now_ms()
    expires = now + int(seconds * 1000)
    with engine.begin() as conn:
        taken = conn.execute(
            update(job_leases)
            .where(job_leases.c.name == name, or_(job_leases.c.holder == holder, job_leases.c.expires_ms < now))
            .values(holder=holder, expires_ms=expires)
        ).rowcount
    if taken:
        return True
    try:
        with engine.begin() as conn:
            conn.execute(insert(job_leases).values(name=name, holder=holder, expires_ms=expires))
    except IntegrityError:  # it exists and is held by someone else
        return False
    return True
