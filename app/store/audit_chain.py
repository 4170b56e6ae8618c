"""The audit chains' rows: appends serialised per chain on its head row, filters, trimming.

`audit_chains` holds one row per chain: the last record's seq and hash (appends lock it first:
a row lock on PostgreSQL, the write lock on SQLite), and where retention trimmed the chain.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import Select, insert, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from .schema import audit_chains, audit_records

GENESIS = "0" * 64
ATTEMPTS = 5


def append(engine: Engine, fields: dict, seal: Callable[[dict], str]) -> dict:
    """Append one record to its chain; appends to one chain are serialised on its head row."""
    chain = fields["chain"]
    for _ in range(ATTEMPTS):
        try:
            with engine.begin() as conn:
                # UPDATE first: it takes the head's row lock (PostgreSQL) or the write lock (SQLite)
                head = conn.execute(
                    update(audit_chains)
                    .where(audit_chains.c.chain == chain)
                    .values(seq=audit_chains.c.seq + 1)
                    .returning(audit_chains.c.seq, audit_chains.c.hash)
                ).first()
                if head is None:
                    conn.execute(
                        insert(audit_chains).values(
                            chain=chain, seq=1, hash=GENESIS, trimmed_seq=0, trimmed_hash=GENESIS
                        )
                    )
                    seq, prev = 1, GENESIS
                else:
                    seq, prev = head.seq, head.hash
                record = {**fields, "seq": seq, "prev_hash": prev}
                record["hash"] = seal(record)
                record["id"] = conn.execute(insert(audit_records).values(record)).inserted_primary_key[0]
                conn.execute(update(audit_chains).where(audit_chains.c.chain == chain).values(hash=record["hash"]))
            return record
        except IntegrityError:  # two first records of a new chain: the loser retries on the head row
            continue
    raise IntegrityError("audit chain head contended", None, Exception("retries exhausted"))


def filtered(chain: str, filters: dict) -> Select:
    query = select(audit_records).where(audit_records.c.chain == chain)
    if filters.get("actor"):
        query = query.where(audit_records.c.actor_id == filters["actor"])
    if filters.get("action"):
        query = query.where(audit_records.c.action == filters["action"])
    if filters.get("target"):
        t = filters["target"]
        query = query.where((audit_records.c.target == t) | (audit_records.c.project == t))
    if filters.get("since_ms") is not None:
        query = query.where(audit_records.c.at_ms >= filters["since_ms"])
    if filters.get("until_ms") is not None:
        query = query.where(audit_records.c.at_ms < filters["until_ms"])
    return query


def trim(engine: Engine, chain: str, before_ms: int) -> int:
    """Delete a chain's records older than `before_ms`, keeping where it was cut so `verify` still holds."""
    with engine.begin() as conn:
        last = conn.execute(
            select(audit_records.c.seq, audit_records.c.hash)
            .where(audit_records.c.chain == chain, audit_records.c.at_ms < before_ms)
            .order_by(audit_records.c.seq.desc())
            .limit(1)
        ).first()
        if last is None:
            return 0
        deleted = conn.execute(
            audit_records.delete().where(audit_records.c.chain == chain, audit_records.c.seq <= last.seq)
        ).rowcount
        conn.execute(
            update(audit_chains)
            .where(audit_chains.c.chain == chain)
            .values(trimmed_seq=last.seq, trimmed_hash=last.hash)
        )
    return deleted


def chains(engine: Engine) -> list[str]:
    """Every chain's name (the retention job walks them)."""
    with engine.connect() as conn:
        return list(conn.execute(select(audit_chains.c.chain)).scalars())
