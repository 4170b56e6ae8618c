"""Admin tokens: signed by JetPero's admin key for a member or an operator; never stored."""

from __future__ import annotations

from config import Config

from ..rules import tokens
from ..vault.connection import Vault
from . import signing
from .actor import Actor


def mint(vault: Vault, config: Config, principal: Actor) -> dict:
    """`{"token", "expires_at"}` for `principal`; the value is returned here and nowhere else."""
    claims = tokens.standard_claims(
        issuer=config.JETPERO_ISSUER,
        subject=principal.subject,
        audience=tokens.ADMIN_AUDIENCE,
        ttl=config.JETPERO_ADMIN_TOKEN_TTL,
    )
    claims.update(role=principal.role, org=principal.org)
    return {"token": signing.sign_admin(vault, claims), "expires_at": claims["exp"]}
