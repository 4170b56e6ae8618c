"""Tokens signed in Vault: admin tokens by JetPero's key, project tokens by the project's key."""

from __future__ import annotations

from ..rules import tokens
from ..vault import transit
from ..vault.connection import Vault
from ..vault.errors import NotFound
from ..vault.layout import ADMIN_KEY, ADMIN_MOUNT, SIGNING_KEY, TRANSIT
from . import projects
from .actor import Actor


def sign_admin(vault: Vault, claims: dict) -> str:
    version = max(admin_public_keys(vault))
    return tokens.issue(
        kid=f"admin/{version}",
        claims=claims,
        sign=lambda message: vault.app(lambda c: transit.sign(c, ADMIN_MOUNT, ADMIN_KEY, message, version=version)),
    )


def sign_project(vault: Vault, org: str, project: str, claims: dict, *, version: int | None = None) -> str:
    """Sign with the key's latest version, or with `version` (one Vault call instead of two)."""
    version = version or max(project_public_keys(vault, org, project))
    return tokens.issue(
        kid=f"{org}/{project}/{version}",
        claims=claims,
        sign=lambda message: vault.project(
            org, project, lambda c: transit.sign(c, TRANSIT, SIGNING_KEY, message, version=version)
        ),
    )


def admin_public_keys(vault: Vault) -> dict[int, bytes]:
    return vault.app(lambda c: transit.public_keys(c, ADMIN_MOUNT, ADMIN_KEY))


def project_public_keys(vault: Vault, org: str, project: str) -> dict[int, bytes]:
    return vault.project(org, project, lambda c: transit.public_keys(c, TRANSIT, SIGNING_KEY))


def project_jwks(vault: Vault, actor: Actor, org: str, project: str) -> dict:
    """The JWKS of the public keys that verify the project's tokens."""
    actor.require("viewer", org)
    try:
        keys = project_public_keys(vault, org, project)
    except NotFound:
        projects.get(vault, org, project)  # Missing("org"/"project") when that is what is missing
        raise
    return {"keys": [tokens.public_jwk(f"{org}/{project}/{v}", raw) for v, raw in sorted(keys.items())]}


def probe(vault: Vault) -> None:
    """One real transit round trip, for readiness (Vault refuses it when its audit log fails)."""
    vault.app(lambda c: transit.sign(c, ADMIN_MOUNT, ADMIN_KEY, b"jetpero-readiness-probe"))
