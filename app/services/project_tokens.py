"""Project-token records in the project's KV: metadata only, the value is never stored."""

from __future__ import annotations

from . import changes, kv, signing
from .connection import Vault
from .orgs import now, quietly
from .projects import KV

PUBLIC_FIELDS = (
    "name",
    "environment",
    "scope",
    "allowed_origins",
    "created_at",
    "expires_at",
    "revoked_at",
    "created_by",
)


def _public(token_id: str, data: dict) -> dict:
    return {"id": token_id, **{field: data.get(field) for field in PUBLIC_FIELDS}}


def create(vault: Vault, org: str, project: str, *, claims: dict, record: dict) -> tuple[dict, str]:
    """Store the record, then have Vault sign the token; no record is left if signing fails."""
    token_id = claims["jti"]
    data = {**record, "created_at": now(), "revoked_at": None}
    vault.project(org, project, lambda c: kv.write(c, KV, f"tokens/{token_id}", data, cas=0))
    try:
        value = signing.sign_project(vault, org, project, claims)
    except BaseException:
        quietly(lambda: vault.project(org, project, lambda c: kv.delete(c, KV, f"tokens/{token_id}")))
        raise
    return _public(token_id, data), value


def get(vault: Vault, org: str, project: str, token_id: str) -> dict:
    data, _ = vault.project(org, project, lambda c: kv.read(c, KV, f"tokens/{token_id}"))
    return _public(token_id, data)


def list_all(vault: Vault, org: str, project: str) -> list[dict]:
    ids = vault.project(org, project, lambda c: kv.keys(c, KV, "tokens"))
    return [get(vault, org, project, token_id) for token_id in sorted(ids)]


def revoke(vault: Vault, org: str, project: str, token_id: str) -> dict:
    """Mark revoked (kept for the audit trail) and tell every worker."""

    def mark(client) -> dict:
        data, version = kv.read(client, KV, f"tokens/{token_id}")
        if not data.get("revoked_at"):
            data = {**data, "revoked_at": now()}
            kv.write(client, KV, f"tokens/{token_id}", data, cas=version)
        return data

    data = vault.project(org, project, mark)
    changes.publish(vault, "token-revoked", org=org, project=project, token=token_id)
    return _public(token_id, data)
