"""Who the bearer of an admin token is: verified once per request, before any input is read."""

from __future__ import annotations

from flask import current_app, g, request

from .. import access
from ..rules.tokens import InvalidToken
from ..services.actor import Actor


def bearer() -> str:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise InvalidToken("missing")
    return value.strip()


def actor() -> Actor:
    """The request's acting principal, from its verified admin token."""
    if "actor" not in g:
        g.actor = Actor.from_admin_claims(access.admin_token(current_app.extensions["jetpero"], bearer()))
    return g.actor


def authenticate() -> None:
    """before_request hook: a missing or bad admin token is a 401 before any input is read."""
    actor()
