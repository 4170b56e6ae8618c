"""Every table, declared once in one `metadata` (Alembic's migrations create the same schema).

Times are epoch milliseconds (`*_ms`, BigInteger) everywhere. No column ever holds a key, a
token value or a Vault path: tokens and members appear by id, providers by name.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Index, Integer, MetaData, String, Table, UniqueConstraint

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# BigInteger primary keys autoincrement on PostgreSQL; SQLite needs INTEGER for its rowid alias.
Id = BigInteger().with_variant(Integer(), "sqlite")

audit_records = Table(
    "audit_records",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("chain", String(120), nullable=False),  # the org's slug, or "(operator)"
    Column("seq", BigInteger, nullable=False),
    Column("at_ms", BigInteger, nullable=False),
    Column("entry", String(32), nullable=False),  # links a change's "requested" and outcome records
    Column("outcome", String(16), nullable=False),  # requested, succeeded, failed, refused
    Column("error", String(80)),  # the failure's kind (an exception class name), never its text
    Column("actor_kind", String(16), nullable=False),  # member, operator, cli, anonymous
    Column("actor_id", String(120)),
    Column("actor_role", String(16)),
    Column("action", String(64), nullable=False),
    Column("org", String(64)),
    Column("project", String(64)),
    Column("target", String(200)),  # provider name, token id, member id
    Column("detail", String(200)),  # e.g. a granted role, a refusal's reason
    Column("request_id", String(64)),
    Column("client_ip", String(64)),
    Column("user_agent", String(256)),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
    UniqueConstraint("chain", "seq", name="uq_audit_records_chain_seq"),
    Index("ix_audit_records_chain_at", "chain", "at_ms"),
)

# One row per chain: the head appends are serialised on, and where retention trimmed the chain.
audit_chains = Table(
    "audit_chains",
    metadata,
    Column("chain", String(120), primary_key=True),
    Column("seq", BigInteger, nullable=False),
    Column("hash", String(64), nullable=False),
    Column("trimmed_seq", BigInteger, nullable=False, default=0),
    Column("trimmed_hash", String(64), nullable=False),
)

usage_records = Table(
    "usage_records",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("at_ms", BigInteger, nullable=False),
    Column("org", String(64), nullable=False),
    Column("project", String(64), nullable=False),
    Column("token_id", String(64)),
    Column("token_name", String(120)),
    Column("environment", String(32)),
    Column("end_user", String(200)),
    Column("provider", String(64), nullable=False),
    Column("method", String(10), nullable=False),
    Column("path", String(512), nullable=False),  # upstream path, never its query
    Column("status", Integer, nullable=False),
    Column("duration_ms", Integer, nullable=False),
    Column("ttfb_ms", Integer),  # upstream time to first byte
    Column("upstream_ms", Integer),  # upstream total
    Column("bytes_in", BigInteger, nullable=False, default=0),
    Column("bytes_out", BigInteger, nullable=False, default=0),
    Column("model", String(200)),
    Column("prompt_tokens", BigInteger),
    Column("completion_tokens", BigInteger),
    Column("total_tokens", BigInteger),
    Index("ix_usage_records_scope_at", "org", "project", "at_ms"),
    Index("ix_usage_records_end_user", "org", "project", "end_user"),
)

org_settings = Table(
    "org_settings",
    metadata,
    Column("org", String(64), primary_key=True),
    Column("usage_retention_days", Integer, nullable=False),
    Column("audit_retention_days", Integer, nullable=False),
)

# Periodic jobs run by one node at a time: a row per job, held until `expires_ms`.
job_leases = Table(
    "job_leases",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("holder", String(120), nullable=False),
    Column("expires_ms", BigInteger, nullable=False),
)
