"""Identity providers a project trusts for end-user tokens, and each one's end-user policy.

A record per IdP in the project's KV (`idps/<name>`): issuer, JWKS URL, audience, allowed
algorithms, the claim naming the user, and the policy (scope, TTL, environment) of the tokens
the exchange mints from its JWTs. `id` is drawn when the IdP is first created and kept across
edits: tokens carry it, so an IdP deleted and created again does not revive the old tokens.
"""

from __future__ import annotations

import math
import re
import time

from config import Config

from ..rules import idp_tokens, providers
from ..rules.tokens import ENVIRONMENTS, new_jti
from ..vault import kv
from ..vault.connection import Vault
from ..vault.errors import NotFound
from ..vault.layout import IDPS, KV, record
from . import audit, changes, projects, provider_keys
from .actor import Actor
from .common import now
from .errors import Invalid

DEFAULT_TTL = 900
MISSING_FOR = 10.0  # seconds an unknown project (or one with no IdP) is remembered as such
PUBLIC_FIELDS = ("issuer", "jwks_url", "audience", "algorithms", "user_claim", "policy", "created_at", "updated_at")
_CLAIM_NAME = re.compile(r"[A-Za-z0-9_.:-]{1,64}")


def _public(name: str, data: dict) -> dict:
    return {"name": name, **{field: data.get(field) for field in PUBLIC_FIELDS}}


def _checked(vault: Vault, config: Config, org: str, project: str, name: str, data: dict) -> dict:
    """The settings to store once every rule holds (Invalid naming the first that does not)."""
    error = providers.base_url_error(data["jwks_url"], allow_private=config.JETPERO_ALLOW_PRIVATE_UPSTREAMS)
    if error:
        raise Invalid(f"jwks_url {error}.")
    algorithms = sorted(set(data.get("algorithms") or ["RS256"]))
    if not set(algorithms) <= set(idp_tokens.ALGORITHMS):
        raise Invalid(f"algorithms must be among {', '.join(idp_tokens.ALGORITHMS)}.")
    user_claim = data.get("user_claim") or "sub"
    if not _CLAIM_NAME.fullmatch(user_claim):
        raise Invalid("user_claim must be a claim name (letters, digits, _ . : -).")
    policy = data.get("policy") or {}
    ttl = policy.get("ttl", DEFAULT_TTL)
    if not 0 < ttl <= config.JETPERO_MAX_END_USER_TTL:
        raise Invalid(f"policy.ttl must be between 1 and {config.JETPERO_MAX_END_USER_TTL} seconds.")
    environment = policy.get("environment", "production")
    if environment not in ENVIRONMENTS:
        raise Invalid(f"policy.environment must be one of {', '.join(ENVIRONMENTS)}.")
    scope = sorted(set(policy.get("scope") or ["*"]))
    if scope != ["*"]:
        unknown = provider_keys.unknown(vault, org, project, scope)
        if unknown:
            raise Invalid(f"policy.scope names providers the project does not have: {', '.join(unknown)}.")
    for other, settings in _all(vault, org, project).items():
        if other != name and settings["issuer"] == data["issuer"]:
            raise Invalid(f"identity provider {other} already has this issuer.")
    return {
        "issuer": data["issuer"],
        "jwks_url": data["jwks_url"],
        "audience": data["audience"],
        "algorithms": algorithms,
        "user_claim": user_claim,
        "policy": {"scope": scope, "ttl": ttl, "environment": environment},
    }


def put(vault: Vault, config: Config, actor: Actor, org: str, project: str, name: str, data: dict) -> dict:
    """Create or replace an identity provider (admins); tells every worker."""
    actor.require("admin", org)
    settings = _checked(vault, config, org, project, name, data)
    with audit.changing(actor, "identity_provider.set", audit.Target(org, project, name)):

        def write(client) -> dict:
            current, version = kv.read_or_empty(client, KV, record(IDPS, name))
            stamp = now()
            stored = {
                **settings,
                "id": current.get("id") or new_jti(),
                "created_at": current.get("created_at", stamp),
                "updated_at": stamp,
            }
            kv.write(client, KV, record(IDPS, name), stored, cas=version)
            return stored

        stored = vault.project(org, project, write)
        changes.publish(vault, "identity-provider-changed", org=org, project=project, idp=name)
    return _public(name, stored)


def _read(vault: Vault, org: str, project: str, name: str) -> dict:
    data, _ = vault.project(org, project, lambda c: kv.read(c, KV, record(IDPS, name)))
    return data


def _all(vault: Vault, org: str, project: str) -> dict[str, dict]:
    names = vault.project(org, project, lambda c: kv.keys(c, KV, IDPS))
    return {name: _read(vault, org, project, name) for name in sorted(names) if not name.endswith("/")}


def show(vault: Vault, actor: Actor, org: str, project: str, name: str) -> dict:
    actor.require("viewer", org)
    return _public(name, _read(vault, org, project, name))


def list_all(vault: Vault, actor: Actor, org: str, project: str) -> list[dict]:
    actor.require("viewer", org)
    return [_public(name, data) for name, data in _all(vault, org, project).items()]


def delete(vault: Vault, actor: Actor, org: str, project: str, name: str) -> None:
    """Remove an identity provider (admins): every token minted from its JWTs stops working, at
    once on this worker and within the revocation bound on the others."""
    actor.require("admin", org)
    _read(vault, org, project, name)
    with audit.changing(actor, "identity_provider.deleted", audit.Target(org, project, name)):
        vault.project(org, project, lambda c: kv.delete(c, KV, record(IDPS, name)))
        changes.publish(vault, "identity-provider-changed", org=org, project=project, idp=name)


def trusted(vault: Vault, org: str, project: str) -> dict:
    """What the exchange and the proxy need of a project, in one value a worker caches:
    `origins`, `idps` (name -> settings) and `until` (when to load it again: never, or soon for
    a project that does not exist or trusts no IdP)."""
    try:
        origins = projects.get(vault, org, project)["allowed_origins"]
        idps = _all(vault, org, project)
    except NotFound:
        origins, idps = [], {}
    until = math.inf if idps else time.time() + MISSING_FOR
    return {"org": org, "project": project, "origins": origins, "idps": idps, "until": until}


def by_issuer(trust: dict, issuer: object) -> tuple[str, dict] | None:
    """(name, settings) of the project's IdP with this issuer, if any."""
    for name, settings in trust["idps"].items():
        if settings["issuer"] == issuer:
            return name, settings
    return None
