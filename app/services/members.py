"""Admin principals: org members (in the org's KV) and operators (in JetPero's own KV).

Adding either mints its admin token at once (shown once); if minting fails, the principal
is removed again.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable

from config import Config

from ..rules import roles
from ..vault import kv
from ..vault.connection import Vault
from ..vault.errors import NotFound
from ..vault.layout import MEMBERS, OPERATORS, ORG_MOUNT, REGISTRY, record
from . import admin_tokens, audit, changes, orgs
from .actor import MEMBER, OPERATOR, Actor
from .common import PAGE_LIMIT, Page, checked_id, now, page, quietly
from .errors import Missing

ID_LENGTH = 16  # hex digits


def _public(member_id: str, data: dict) -> dict:
    return {"id": member_id, **{k: data.get(k) for k in ("name", "role", "created_at", "created_by")}}


def _new_id() -> str:
    return uuid.uuid4().hex[:ID_LENGTH]


def _with_token(vault: Vault, config: Config, principal: Actor, public: dict, undo: Callable[[], None]) -> dict:
    try:
        issued = admin_tokens.mint(vault, config, principal)
    except BaseException:
        quietly(undo)
        raise
    return {**public, **issued}


def add(vault: Vault, config: Config, actor: Actor, org: str, *, name: str, role: str) -> dict:
    """Add a member (admins) with a role never above the actor's own; with their admin token."""
    actor.require("admin", org)
    actor.require_grant(role, "You cannot grant a role above your own.")
    orgs.get(vault, org)
    member_id = _new_id()
    data = {"name": name, "role": role, "created_at": now(), "created_by": actor.subject}
    with audit.changing(actor, "member.added", audit.Target(org, None, member_id), detail=f"role={role}"):
        vault.app(lambda c: kv.write(c, ORG_MOUNT, record(MEMBERS, member_id), data, cas=0), namespace=org)
        principal = Actor(kind=MEMBER, id=member_id, role=role, org=org)
        return _with_token(vault, config, principal, _public(member_id, data), lambda: _delete(vault, org, member_id))


def get(vault: Vault, org: str, member_id: str) -> dict:
    """The member's record (Missing when there is none); no authorisation: callers check."""
    try:
        data, _ = vault.app(lambda c: kv.read(c, ORG_MOUNT, record(MEMBERS, member_id)), namespace=org)
    except NotFound:
        orgs.get(vault, org)  # Missing("org") when it is the org that is missing
        raise Missing("member", f"{org}/{member_id}") from None
    return _public(member_id, data)


def show(vault: Vault, actor: Actor, org: str, member_id: str) -> dict:
    actor.require("viewer", org)
    return get(vault, org, checked_id(member_id, ID_LENGTH, "member"))


def list_all(vault: Vault, actor: Actor, org: str, *, after: str | None = None, limit: int = PAGE_LIMIT) -> Page:
    """The org's members after `after` in id order."""
    actor.require("viewer", org)
    orgs.get(vault, org)  # an unknown org is Missing, not an empty list
    ids = vault.app(lambda c: kv.keys(c, ORG_MOUNT, MEMBERS), namespace=org)
    return page(ids, lambda member_id: get(vault, org, member_id), after=after, limit=limit)


def remove(vault: Vault, actor: Actor, org: str, member_id: str) -> None:
    """Remove a member (admins; never one above the actor): their tokens stop working everywhere."""
    actor.require("admin", org)
    member = get(vault, org, checked_id(member_id, ID_LENGTH, "member"))
    actor.require_grant(member["role"], "You cannot remove a member whose role is above your own.")
    with audit.changing(actor, "member.removed", audit.Target(org, None, member_id), detail=f"role={member['role']}"):
        _delete(vault, org, member_id)


def _delete(vault: Vault, org: str, member_id: str) -> None:
    vault.app(lambda c: kv.delete(c, ORG_MOUNT, record(MEMBERS, member_id)), namespace=org)
    changes.publish(vault, "member-removed", org=org, member=member_id)


def add_operator(vault: Vault, config: Config, actor: Actor, *, name: str) -> dict:
    """Add an operator (every org; operators and the command line), with their admin token."""
    actor.require("operator")
    operator_id = _new_id()
    path = record(OPERATORS, operator_id)
    data = {"name": name, "role": roles.OPERATOR, "created_at": now(), "created_by": actor.subject}
    with audit.changing(actor, "operator_token.minted", audit.Target(name=operator_id), detail=f"name={name}"):
        vault.app(lambda c: kv.write(c, REGISTRY, path, data, cas=0))
        principal = Actor(kind=OPERATOR, id=operator_id, role=roles.OPERATOR)
        return _with_token(
            vault,
            config,
            principal,
            _public(operator_id, data),
            lambda: vault.app(lambda c: kv.delete(c, REGISTRY, path)),
        )


def get_operator(vault: Vault, operator_id: str) -> dict:
    try:
        data, _ = vault.app(lambda c: kv.read(c, REGISTRY, record(OPERATORS, operator_id)))
    except NotFound:
        raise Missing("operator", operator_id) from None
    return _public(operator_id, data)
