"""One worker's exchange: which IdPs a project trusts (cached), their key sets, and signing.

Costs, per exchange once warm: no Vault call to verify the IdP's JWT (the project's IdPs and
origins are cached in `Worker.identity_providers`, evicted by the change feed; the key set is
cached here), then one Vault call to sign (transit sign, with the key version cached for
`VERSION_FOR` seconds). Loads for projects not yet cached are bounded per worker
(`COLD_LOADS_PER_SECOND`): requests naming random projects cannot turn into Vault calls faster.
"""

from __future__ import annotations

import time
from operator import itemgetter

from limits import RateLimitItemPerSecond
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter

from ..errors import ApiError
from ..rules import idp_tokens, tokens
from ..services import identity_providers, signing
from ..state import Cache, Worker
from .jwks import JwksUnavailable, KeySets

COLD_LOADS_PER_SECOND = 20
VERSION_FOR = 60.0  # seconds a worker signs with the key version it last read
EXTENSION = "jetpero.exchange"  # app.extensions key


class Exchanger:
    def __init__(self, config) -> None:
        self.config = config
        self.key_sets = KeySets(config)
        self._cold = MovingWindowRateLimiter(MemoryStorage())
        self._cold_rate = RateLimitItemPerSecond(COLD_LOADS_PER_SECOND)
        self.versions = Cache("signing_versions", expiry=itemgetter("until"))

    def trust(self, worker: Worker, org: str, project: str) -> dict:
        """The project's origins and IdPs (cached); 503 past the bound on loads not cached yet."""
        key = (org, project)
        cached = worker.identity_providers.get(key)
        if cached is None or time.time() >= cached["until"]:
            if not self._cold.hit(self._cold_rate, "cold"):
                raise ApiError(503, "Too many exchanges for projects not loaded yet; retry shortly.", headers={"Retry-After": "1"})
        return worker.identity_providers.get_or_load(key, identity_providers.trusted, worker.vault, org, project)

    def verify(self, trust: dict, token: object) -> tuple[str, dict, dict]:
        """(IdP name, its settings, the JWT's verified claims), or InvalidToken."""
        _, unverified = idp_tokens.unverified(token)
        found = identity_providers.by_issuer(trust, unverified.get("iss"))
        if found is None:
            raise tokens.InvalidToken("unknown issuer")
        name, idp = found
        ident = (trust["org"], trust["project"], name, idp["id"], idp["jwks_url"])
        try:
            try:
                keys = self.key_sets.keys(ident, idp["jwks_url"])
                return name, idp, idp_tokens.verify(token, idp, keys)
            except idp_tokens.UnknownKey:
                keys = self.key_sets.keys(ident, idp["jwks_url"], unknown_kid=True)
                return name, idp, idp_tokens.verify(token, idp, keys)
        except JwksUnavailable:
            raise ApiError(
                503, "The identity provider's keys (JWKS) could not be fetched; retry later.", headers={"Retry-After": "5"}
            ) from None

    def sign(self, worker: Worker, org: str, project: str, claims: dict) -> str:
        """One Vault call: the transit sign (the latest key version is cached)."""
        key = (org, project)
        version = self.versions.get_or_load(key, self._latest, worker, org, project)["version"]
        return signing.sign_project(worker.vault, org, project, claims, version=version)

    @staticmethod
    def _latest(worker: Worker, org: str, project: str) -> dict:
        version = max(signing.project_public_keys(worker.vault, org, project))
        return {"version": version, "until": time.time() + VERSION_FOR}


def end_user_claims(config, org: str, project: str, name: str, idp: dict, user: str) -> dict:
    """The claims of the token an exchange mints: bound to the end user and to the IdP (by name
    and id), scope, environment and lifetime from the IdP's policy."""
    policy = idp["policy"]
    ttl = min(policy["ttl"], config.JETPERO_MAX_END_USER_TTL)
    claims = tokens.standard_claims(
        issuer=config.JETPERO_ISSUER, subject=f"{org}/{project}", audience=tokens.PROXY_AUDIENCE, ttl=ttl
    )
    claims.update(env=policy["environment"], scope=" ".join(policy["scope"]), end_user=user, idp=name, idp_id=idp["id"])
    return claims


def child_claims(config, parent: dict, *, end_user: str, scope: list[str], ttl: int) -> dict:
    """A child token's claims: the parent's project and environment, a scope within the parent's,
    a life ending no later than the parent's, bound to `end_user` and to the parent (`parent`)."""
    claims = tokens.standard_claims(
        issuer=config.JETPERO_ISSUER,
        subject=parent["sub"],
        audience=tokens.PROXY_AUDIENCE,
        ttl=min(ttl, config.JETPERO_MAX_END_USER_TTL),
    )
    claims["exp"] = min(claims["exp"], parent["exp"])
    claims.update(env=parent["env"], scope=" ".join(scope), end_user=end_user, parent=parent["jti"])
    return claims
