"""Project tokens: issued per environment with a scope and origins; their records in the
project's KV hold metadata only, the value is never stored."""

from __future__ import annotations

from config import Config

from ..rules import tokens
from ..vault import kv
from ..vault.connection import Vault
from ..vault.errors import NotFound
from ..vault.layout import KV, TOKENS, record
from . import audit, changes, projects, provider_keys, signing
from .actor import Actor
from .common import PAGE_LIMIT, Page, checked_id, now, page, quietly
from .errors import Invalid, Missing

PUBLIC_FIELDS = (
    "name",
    "environment",
    "scope",
    "allowed_origins",
    "created_at",
    "expires_at",
    "revoked_at",
    "created_by",
    "retire_at",
)

ID_LENGTH = 32  # hex digits: a uuid4's (`tokens.new_jti`)


def _public(token_id: str, data: dict) -> dict:
    return {"id": token_id, **{field: data.get(field) for field in PUBLIC_FIELDS}}


def _checked(vault: Vault, config: Config, org: str, project: str, data: dict) -> tuple[list[str], list[str] | None]:
    """(scope, origins) once every rule holds: lifetime, known providers, origins of the project."""
    if data["expires_in"] > config.JETPERO_MAX_TOKEN_TTL:
        raise Invalid(f"expires_in is above the maximum of {config.JETPERO_MAX_TOKEN_TTL} seconds.", field="expires_in")
    project_record = projects.get(vault, org, project)
    scope = data.get("scope") or ["*"]
    if scope != ["*"]:
        unknown = provider_keys.unknown(vault, org, project, sorted(set(scope)))
        if unknown:
            raise Invalid(f"scope names providers the project does not have: {', '.join(unknown)}.", field="scope")
    origins = data.get("allowed_origins")
    if origins is not None and not set(origins) <= set(project_record["allowed_origins"]):
        raise Invalid("allowed_origins must be a subset of the project's allowed origins.", field="allowed_origins")
    return sorted(set(scope)), origins


def issue(vault: Vault, config: Config, actor: Actor, org: str, project: str, data: dict) -> dict:
    """Issue a project token (developers): `data` holds `name`, `environment`, `expires_in` and
    optionally `scope` (provider names; all when absent) and `allowed_origins` (a subset of the
    project's). Returns the record with the value under `token`; the record is stored first, and
    removed again if Vault cannot sign."""
    actor.require("developer", org)
    scope, origins = _checked(vault, config, org, project, data)
    claims = tokens.standard_claims(
        issuer=config.JETPERO_ISSUER, subject=f"{org}/{project}", audience=tokens.PROXY_AUDIENCE, ttl=data["expires_in"]
    )
    claims.update(env=data["environment"], scope=" ".join(scope))
    token_id = claims["jti"]
    stored = {
        "name": data["name"],
        "environment": data["environment"],
        "scope": scope,
        "allowed_origins": origins,
        "expires_at": claims["exp"],
        "created_by": actor.subject,
        "created_at": now(),
        "revoked_at": None,
    }
    with audit.changing(actor, "token.issued", audit.Target(org, project, token_id), detail=data["environment"]):
        vault.project(org, project, lambda c: kv.write(c, KV, record(TOKENS, token_id), stored, cas=0))
        try:
            value = signing.sign_project(vault, org, project, claims)
        except BaseException:
            quietly(lambda: vault.project(org, project, lambda c: kv.delete(c, KV, record(TOKENS, token_id))))
            raise
    return {**_public(token_id, stored), "token": value}


def get(vault: Vault, org: str, project: str, token_id: str) -> dict:
    """The token's record (Missing when there is none); no authorisation: callers check."""
    try:
        data, _ = vault.project(org, project, lambda c: kv.read(c, KV, record(TOKENS, token_id)))
    except NotFound:
        projects.get(vault, org, project)  # Missing("org"/"project") when that is what is missing
        raise Missing("token", token_id) from None
    return _public(token_id, data)


def show(vault: Vault, actor: Actor, org: str, project: str, token_id: str) -> dict:
    actor.require("viewer", org)
    return get(vault, org, project, checked_id(token_id, ID_LENGTH, "token"))


def list_all(
    vault: Vault, actor: Actor, org: str, project: str, *, after: str | None = None, limit: int = PAGE_LIMIT
) -> Page:
    """The project's token records after `after` in id order (revoked and expired ones too, until pruned)."""
    actor.require("viewer", org)
    ids = vault.project(org, project, lambda c: kv.keys(c, KV, TOKENS))
    return page(ids, lambda token_id: get(vault, org, project, token_id), after=after, limit=limit)


def revoke(vault: Vault, actor: Actor, org: str, project: str, token_id: str) -> dict:
    """Mark revoked (developers; kept for the audit trail) and tell every worker."""
    actor.require("developer", org)
    token_id = checked_id(token_id, ID_LENGTH, "token")

    def mark(client) -> dict:
        data, version = kv.read(client, KV, record(TOKENS, token_id))
        if not data.get("revoked_at"):
            data = {**data, "revoked_at": now()}
            kv.write(client, KV, record(TOKENS, token_id), data, cas=version)
        return data

    with audit.changing(actor, "token.revoked", audit.Target(org, project, token_id)):
        try:
            data = vault.project(org, project, mark)
        except NotFound:
            get(vault, org, project, token_id)  # Missing, naming what is missing
            raise
        changes.publish(vault, "token-revoked", org=org, project=project, token=token_id)
    return _public(token_id, data)
