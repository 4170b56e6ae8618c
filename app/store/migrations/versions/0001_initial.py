"""Audit records and chains, usage records, org settings, job leases.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "audit_records",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("chain", sa.String(120), nullable=False),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("at_ms", sa.BigInteger, nullable=False),
        sa.Column("entry", sa.String(32), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("error", sa.String(80)),
        sa.Column("actor_kind", sa.String(16), nullable=False),
        sa.Column("actor_id", sa.String(120)),
        sa.Column("actor_role", sa.String(16)),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("org", sa.String(64)),
        sa.Column("project", sa.String(64)),
        sa.Column("target", sa.String(200)),
        sa.Column("detail", sa.String(200)),
        sa.Column("request_id", sa.String(64)),
        sa.Column("client_ip", sa.String(64)),
        sa.Column("user_agent", sa.String(256)),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_audit_records"),
        sa.UniqueConstraint("chain", "seq", name="uq_audit_records_chain_seq"),
    )
    op.create_index("ix_audit_records_chain_at", "audit_records", ["chain", "at_ms"])
    op.create_table(
        "audit_chains",
        sa.Column("chain", sa.String(120), nullable=False),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.Column("trimmed_seq", sa.BigInteger, nullable=False),
        sa.Column("trimmed_hash", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("chain", name="pk_audit_chains"),
    )
    op.create_table(
        "usage_records",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("at_ms", sa.BigInteger, nullable=False),
        sa.Column("org", sa.String(64), nullable=False),
        sa.Column("project", sa.String(64), nullable=False),
        sa.Column("token_id", sa.String(64)),
        sa.Column("token_name", sa.String(120)),
        sa.Column("environment", sa.String(32)),
        sa.Column("end_user", sa.String(200)),
        sa.Column("provider", sa.String(64), nullable=False),
        sa.Column("method", sa.String(10), nullable=False),
        sa.Column("path", sa.String(512), nullable=False),
        sa.Column("status", sa.Integer, nullable=False),
        sa.Column("duration_ms", sa.Integer, nullable=False),
        sa.Column("ttfb_ms", sa.Integer),
        sa.Column("upstream_ms", sa.Integer),
        sa.Column("bytes_in", sa.BigInteger, nullable=False),
        sa.Column("bytes_out", sa.BigInteger, nullable=False),
        sa.Column("model", sa.String(200)),
        sa.Column("prompt_tokens", sa.BigInteger),
        sa.Column("completion_tokens", sa.BigInteger),
        sa.Column("total_tokens", sa.BigInteger),
        sa.PrimaryKeyConstraint("id", name="pk_usage_records"),
    )
    op.create_index("ix_usage_records_scope_at", "usage_records", ["org", "project", "at_ms"])
    op.create_index("ix_usage_records_end_user", "usage_records", ["org", "project", "end_user"])
    op.create_table(
        "org_settings",
        sa.Column("org", sa.String(64), nullable=False),
        sa.Column("usage_retention_days", sa.Integer, nullable=False),
        sa.Column("audit_retention_days", sa.Integer, nullable=False),
        sa.PrimaryKeyConstraint("org", name="pk_org_settings"),
    )
    op.create_table(
        "job_leases",
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("holder", sa.String(120), nullable=False),
        sa.Column("expires_ms", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_job_leases"),
    )


def downgrade() -> None:
    for table in ("job_leases", "org_settings", "usage_records", "audit_chains", "audit_records"):
        op.drop_table(table)
