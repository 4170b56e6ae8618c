"""Who is calling: project tokens (proxy) and admin tokens (admin API), verified per worker.

A token's first use on a worker costs Vault round trips (its public key if not cached, and
its record: does it still exist, is it revoked, does its member still exist). After that it is
a dict lookup until it expires or the change feed evicts it.
"""

from __future__ import annotations

import re

from .rules import roles, tokens
from .rules.slugs import SLUG_PATTERN
from .rules.tokens import ENVIRONMENTS
from .services import members, project_tokens, signing
from .state import Worker
from .vault.errors import NotFound

_PROJECT_KID = re.compile(rf"({SLUG_PATTERN})/({SLUG_PATTERN})/([1-9][0-9]{{0,5}})")
_ADMIN_KID = re.compile(r"admin/([1-9][0-9]{0,5})")
_MEMBER_SUB = re.compile(rf"member:({SLUG_PATTERN}):([0-9a-f]{{16}})")
_OPERATOR_SUB = re.compile(r"operator:([0-9a-f]{16})")


def _public_key(kid: str, load, *args) -> object:
    """The public key `kid` names, from the key set `load(*args)` reads (InvalidToken if not there)."""
    try:
        raw = load(*args).get(int(kid.rsplit("/", 1)[1]))
    except NotFound:
        raw = None
    if raw is None:
        raise tokens.InvalidToken("unknown key")
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
    key = worker.public_keys.get_or_load(kid, _public_key, kid, signing.project_public_keys, worker.vault, org, project)
    claims = tokens.verify(token, key=key, audience=tokens.PROXY_AUDIENCE, issuer=worker.config.JETPERO_ISSUER)
    if claims["sub"] != f"{org}/{project}":
        raise tokens.InvalidToken("subject")
    if claims.get("env") not in ENVIRONMENTS or not isinstance(claims.get("scope"), str):
        raise tokens.InvalidToken("claims")
    try:
        record = project_tokens.get(worker.vault, org, project, claims["jti"])
    except NotFound:
        raise tokens.InvalidToken("unknown token") from None
    if record["revoked_at"]:
        raise tokens.InvalidToken("revoked")
    return {
        **claims,
        "org": org,
        "project": project,
        "providers": frozenset(claims["scope"].split()),
        "origins": record["allowed_origins"] or None,
        "token_name": record["name"],
    }


def admin_token(worker: Worker, token: str) -> dict:
    """The verified claims of an admin token whose principal still exists; adds `org`, `member`."""
    return worker.admin_tokens.get_or_load(token, _verify_admin_token, worker, token)


def _verify_admin_token(worker: Worker, token: str) -> dict:
    kid = tokens.unverified_header(token)["kid"]
    if not _ADMIN_KID.fullmatch(kid):
        raise tokens.InvalidToken("kid")
    key = worker.public_keys.get_or_load(kid, _public_key, kid, signing.admin_public_keys, worker.vault)
    claims = tokens.verify(token, key=key, audience=tokens.ADMIN_AUDIENCE, issuer=worker.config.JETPERO_ISSUER)
    operator = _OPERATOR_SUB.fullmatch(claims["sub"])
    member = _MEMBER_SUB.fullmatch(claims["sub"])
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
        raise tokens.InvalidToken("unknown principal") from None
    return verified
