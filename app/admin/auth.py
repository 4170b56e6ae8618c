"""Admin authorisation: who the bearer is, and whether their role reaches what they ask."""

from __future__ import annotations

from flask import current_app, g, request

from .. import access
from ..errors import ApiError
from ..tokens import InvalidToken

RANK = {"viewer": 1, "developer": 2, "admin": 3, "owner": 4, "operator": 5}


def bearer() -> str:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise InvalidToken("missing")
    return value.strip()


def principal() -> dict:
    if "principal" not in g:
        g.principal = access.admin_token(current_app.extensions["jetpero"], bearer())
    return g.principal


def authenticate() -> None:
    """before_request hook: a missing or bad admin token is a 401 before any input is read."""
    principal()


def require(minimum: str, org: str | None = None) -> dict:
    """The caller, if their role is at least `minimum` (in `org`, unless they are an operator)."""
    who = principal()
    if who["role"] == "operator":
        return who
    if minimum == "operator" or (org is not None and who["org"] != org) or RANK[who["role"]] < RANK[minimum]:
        raise ApiError(403, "Your role does not allow this.")
    return who


def can_grant(who: dict, role: str) -> bool:
    """Nobody grants a role above their own."""
    return RANK[who["role"]] >= RANK[role]
