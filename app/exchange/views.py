"""`POST /exchange/{org}/{project}`: an identity provider's JWT in, a short-lived end-user
project token out (CORS for the project's allowed origins). `POST /exchange/{org}/{project}/child`:
a backend's project token in, a narrower, shorter-lived child token bound to an end user out.

Every failure to authenticate is the uniform 401 (`InvalidToken`); nothing is written to Vault.
"""

from __future__ import annotations

import json
import time

from flask import Blueprint, Response, current_app, g, jsonify, request

from .. import access
from ..errors import ApiError
from ..rules import idp_tokens
from ..rules.slugs import is_slug
from ..rules.tokens import InvalidToken
from ..services.errors import Invalid
from ..services.identity_providers import DEFAULT_TTL
from .exchanger import EXTENSION, Exchanger, child_claims, end_user_claims

bp = Blueprint("exchange", __name__)

MAX_BODY = 16384


def _exchanger() -> Exchanger:
    return current_app.extensions[EXTENSION]


def _body() -> dict:
    """The JSON object sent (at most MAX_BODY bytes), {} when none; InvalidToken otherwise."""
    raw = request.stream.read(MAX_BODY + 1)
    if not raw:
        return {}
    if len(raw) > MAX_BODY:
        raise ApiError(413, f"The request body is larger than {MAX_BODY} bytes.")
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError, MemoryError):
        raise InvalidToken("body") from None
    if not isinstance(body, dict):
        raise InvalidToken("body")
    return body


def _bearer() -> str | None:
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


@bp.after_request
def _cors(response: Response) -> Response:
    """Every answer to an allowed origin (errors too) is readable by its page."""
    origin = g.get("exchange_origin")
    if origin:
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Vary"] = "Origin"
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.route("/exchange/<slug:org>/<slug:project>", methods=["POST", "OPTIONS"])
def exchange(org: str, project: str):
    """An IdP's JWT (`{"token": ...}` or `Authorization: Bearer`) for an end-user token."""
    exchanger, worker = _exchanger(), current_app.extensions["jetpero"]
    trust = exchanger.trust(worker, org, project)
    origin = request.headers.get("Origin")
    if origin:
        if origin not in trust["origins"]:
            raise ApiError(403, "This origin is not allowed for this project.")
        g.exchange_origin = origin
    if request.method == "OPTIONS":
        response = Response(status=204)
        response.headers["Access-Control-Allow-Methods"] = "POST"
        response.headers["Access-Control-Allow-Headers"] = "Authorization, Content-Type"
        response.headers["Access-Control-Max-Age"] = "600"
        return response
    token = _bearer() or _body().get("token")
    name, idp, verified = exchanger.verify(trust, token)
    if not worker.fresh():  # a worker behind the change feed might still trust a deleted IdP
        worker.sync_now()
        if exchanger.trust(worker, org, project)["idps"].get(name, {}).get("id") != idp["id"]:
            raise InvalidToken("identity provider changed")
    user = verified[idp["user_claim"]]
    claims = end_user_claims(exchanger.config, org, project, name, idp, user)
    value = exchanger.sign(worker, org, project, claims)
    return jsonify(_issued(value, claims)), 201


@bp.route("/exchange/<slug:org>/<slug:project>/child", methods=["POST"])
def child(org: str, project: str):
    """A child token from a project token (the bearer): `end_user`, optional `scope` (a subset
    of the parent's) and `expires_in` (capped by the parent's remaining life)."""
    exchanger, worker = _exchanger(), current_app.extensions["jetpero"]
    token = _bearer()
    if not token:
        raise InvalidToken("missing")
    if not worker.fresh():  # the parent's revocation must have been seen
        worker.sync_now()
    parent = access.project_token(worker, token)
    if (parent["org"], parent["project"]) != (org, project):
        raise ApiError(403, "This token belongs to another project.")
    if "end_user" in parent:
        raise ApiError(403, "Only a project token can mint child tokens, not an end-user token.")
    body = _body()
    end_user, scope, ttl = _child_request(body, parent["providers"], exchanger.config.JETPERO_MAX_END_USER_TTL)
    claims = child_claims(exchanger.config, parent, end_user=end_user, scope=scope, ttl=ttl)
    if claims["exp"] <= time.time():
        raise InvalidToken("parent expired")
    return jsonify(_issued(exchanger.sign(worker, org, project, claims), claims)), 201


def _child_request(body: dict, parent_scope: frozenset, cap: int) -> tuple[str, list[str], int]:
    end_user = body.get("end_user")
    if not isinstance(end_user, str) or not 0 < len(end_user) <= idp_tokens.MAX_USER_LENGTH or not end_user.isprintable():
        raise Invalid(f"end_user must be a string of 1 to {idp_tokens.MAX_USER_LENGTH} printable characters.")
    scope = body.get("scope") or sorted(parent_scope)
    if not isinstance(scope, list) or not all(isinstance(name, str) and (name == "*" or is_slug(name)) for name in scope):
        raise Invalid("scope must be a list of provider names.")
    if "*" not in parent_scope and not set(scope) <= parent_scope:
        raise Invalid("scope must be a subset of the parent token's scope.")
    ttl = body.get("expires_in", DEFAULT_TTL)
    if not isinstance(ttl, int) or isinstance(ttl, bool) or not 0 < ttl <= cap:
        raise Invalid(f"expires_in must be between 1 and {cap} seconds.")
    return end_user, sorted(set(scope)), ttl


def _issued(value: str, claims: dict) -> dict:
    return {
        "token": value,
        "token_type": "Bearer",
        "expires_at": claims["exp"],
        "expires_in": claims["exp"] - claims["iat"],
        "end_user": claims["end_user"],
        "scope": claims["scope"].split(),
    }
