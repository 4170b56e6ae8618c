"""Who is calling: project tokens (proxy) and admin tokens (admin API), verified per worker.

A token's first use on a worker costs Vault round trips (its public key if not cached, and
its record: does it still exist, is it revoked, does its member still exist). After that it is
a dict lookup until it expires or the change feed evicts it. What Vault said is not there is
remembered (`worker.absent`) and the loads a token can cause before its signature is checked
are capped (`worker.budget`): no anonymous caller can make a worker call Vault at will
(`app/negative.py`). Any failure to parse a token is the same 401 (`InvalidToken`).
"""

from __future__ import annotations

import re
import time

from .rules import roles, tokens
from .rules.slugs import SLUG_PATTERN
from .rules.tokens import ENVIRONMENTS
from .services import identity_providers, members, project_tokens, signing
from .state import Worker
from .vault.errors import NotFound

_PROJECT_KID = re.compile(rf"({SLUG_PATTERN})/({SLUG_PATTERN})/([1-9][0-9]{{0,5}})")
_ADMIN_KID = re.compile(r"admin/([1-9][0-9]{0,5})")
_MEMBER_SUB = re.compile(rf"member:({SLUG_PATTERN}):([0-9a-f]{{16}})")
_OPERATOR_SUB = re.compile(r"operator:([0-9a-f]{16})")
ADMIN_SCOPE = ("admin", None)  # the admin key set's scope in `worker.absent` and `worker.budget`


def _public_key(worker: Worker, kid: str, scope: tuple, load, *args) -> object:
    """The public key `kid` names, from the key set `load(*args)` reads (InvalidToken if not there):
    loaded only if Vault has not just said it is absent and the scope's budget allows."""
    if kid in worker.absent or scope in worker.absent:
        raise tokens.InvalidToken("unknown key")
    worker.budget.spend(scope)
    try:
        raw = load(*args).get(int(kid.rsplit("/", 1)[1]))
    except NotFound:
        worker.absent.add(scope, scope)  # no such project (or key set)
        raise tokens.InvalidToken("unknown key") from None
    if raw is None:
        worker.absent.add(kid, scope)  # no such version (yet: a rotation clears it)
        raise tokens.InvalidToken("unknown key")
    worker.budget.refund(scope)
    return tokens.okp_key(raw)


def project_token(worker: Worker, token: str) -> dict:
    """The verified claims of a project token, plus `org`, `project`, `providers` (the scope as a set)
    and the token's origins."""
    return worker.project_tokens.get_or_load(token, _verify_project_token, worker, token)


def _verify_project_token(worker: Worker, token: str) -> dict:
    kid = tokens.unverified_header(token)["kid"]
    match = _PROJECT_KID.fullmatch(kid)
    if not match:
        raise tokens.InvalidToken("kid")
    org, project, _ = match.groups()
    scope = (org, project)
    key = worker.public_keys.get_or_load(
        kid, _public_key, worker, kid, scope, signing.project_public_keys, worker.vault, org, project
    )
    claims = tokens.verify(token, key=key, audience=tokens.PROXY_AUDIENCE, issuer=worker.config.JETPERO_ISSUER)
    if claims["sub"] != f"{org}/{project}":
        raise tokens.InvalidToken("subject")
    if claims.get("env") not in ENVIRONMENTS or not isinstance(claims.get("scope"), str):
        raise tokens.InvalidToken("claims")
    if "idp" in claims:
        return _exchanged_token(worker, org, project, claims)
    record_id = claims.get("parent", claims["jti"])  # a child token stands or falls with its parent's record
    dead = f"{org}/{project}:{record_id}"
    if dead in worker.absent:
        raise tokens.InvalidToken("unknown or revoked token")
    try:
        record = project_tokens.get(worker.vault, org, project, record_id)
    except NotFound:
        worker.absent.add(dead, scope)
        raise tokens.InvalidToken("unknown token") from None
    if record["revoked_at"]:
        worker.absent.add(dead, scope)
        raise tokens.InvalidToken("revoked")
    retire_at = record.get("retire_at")  # a rotated token: good until its grace ends
    if retire_at is not None and retire_at <= time.time():
        raise tokens.InvalidToken("retired")
    return {
        "valid_until": claims["exp"] if retire_at is None else min(claims["exp"], retire_at),  # the cache's expiry
        **claims,
        "org": org,
        "project": project,
        "providers": frozenset(claims["scope"].split()),
        "origins": record["allowed_origins"] or None,
        "token_name": record["name"],
    }


def _exchanged_token(worker: Worker, org: str, project: str, claims: dict) -> dict:
    """An end-user token from the exchange: stateless, it stands while the IdP whose JWT it was
    minted from is still trusted (same `idp_id`) and its scope within that IdP's policy."""
    key = (org, project)
    trust = worker.identity_providers.get_or_load(key, identity_providers.trusted, worker.vault, *key)
    idp = trust["idps"].get(claims["idp"])
    if idp is None or idp["id"] != claims.get("idp_id") or not isinstance(claims.get("end_user"), str):
        raise tokens.InvalidToken("identity provider no longer trusted")
    providers = frozenset(claims["scope"].split())
    allowed = set(idp["policy"]["scope"])
    if "*" not in allowed and not providers <= allowed:
        raise tokens.InvalidToken("scope beyond the end-user policy")
    # `valid_until`: the project-token cache's expiry, as for every other project token.
    return {**claims, "org": org, "project": project, "providers": providers, "origins": None, "valid_until": claims["exp"]}


def admin_token(worker: Worker, token: str) -> dict:
    """The verified claims of an admin token whose principal still exists; adds `org`, `member`."""
    return worker.admin_tokens.get_or_load(token, _verify_admin_token, worker, token)


def _verify_admin_token(worker: Worker, token: str) -> dict:
    kid = tokens.unverified_header(token)["kid"]
    if not _ADMIN_KID.fullmatch(kid):
        raise tokens.InvalidToken("kid")
    key = worker.public_keys.get_or_load(
        kid, _public_key, worker, kid, ADMIN_SCOPE, signing.admin_public_keys, worker.vault
    )
    claims = tokens.verify(token, key=key, audience=tokens.ADMIN_AUDIENCE, issuer=worker.config.JETPERO_ISSUER)
    operator = _OPERATOR_SUB.fullmatch(claims["sub"])
    member = _MEMBER_SUB.fullmatch(claims["sub"])
    scope = (member.group(1), None) if member else ADMIN_SCOPE
    dead = f"admin:{claims['jti']}"
    if dead in worker.absent:
        raise tokens.InvalidToken("unknown principal")
    try:
        if operator and claims.get("role") == "operator":
            members.get_operator(worker.vault, operator.group(1))
            verified = {**claims, "org": None, "member": operator.group(1)}
        elif member and claims.get("role") in roles.MEMBER_ROLES:
            record = members.get(worker.vault, member.group(1), member.group(2))
            if record["role"] != claims["role"]:
                raise tokens.InvalidToken("role")
            verified = {**claims, "org": member.group(1), "member": member.group(2)}
        else:
            raise tokens.InvalidToken("subject")
    except NotFound:
        worker.absent.add(dead, scope)
        raise tokens.InvalidToken("unknown principal") from None
    return verified
