"""Organisations: a registry record in JetPero's KV plus a namespace `<org>` with its own KV.

Deleting an org (and its projects) is `cascade.delete_org`.
"""

from __future__ import annotations

from ..vault import kv
from ..vault.connection import Vault
from ..vault.errors import Conflict, NotFound
from ..vault.layout import ORG_MOUNT, ORGS, REGISTRY, record
from . import audit
from .actor import Actor
from .common import PAGE_LIMIT, Page, new_namespace, now, page, quietly
from .errors import Exists, Missing


def _public(slug: str, data: dict) -> dict:
    return {"slug": slug, "display_name": data.get("display_name", slug), "created_at": data.get("created_at")}


def create(vault: Vault, actor: Actor, *, slug: str, display_name: str) -> dict:
    """Claim the name, then make the namespace and its KV; undo everything on failure (operators)."""
    actor.require("operator")
    data = {"display_name": display_name, "created_at": now()}
    with audit.changing(actor, "org.created", audit.Target(name=slug)):  # an operator-level event
        try:
            vault.app(lambda c: kv.write(c, REGISTRY, record(ORGS, slug), data, cas=0))
        except Conflict:
            raise Exists("org", slug) from None

        def provision() -> None:
            vault.app(lambda c: kv.enable(c, ORG_MOUNT, "JetPero org records"), namespace=slug)

        try:
            new_namespace(vault, None, slug, "org", provision)
        except BaseException:
            quietly(lambda: vault.app(lambda c: kv.delete(c, REGISTRY, record(ORGS, slug))))
            raise
    return _public(slug, data)


def get(vault: Vault, slug: str) -> dict:
    """The org's record (Missing when there is none); no authorisation: callers check."""
    try:
        data, _ = vault.app(lambda c: kv.read(c, REGISTRY, record(ORGS, slug)))
    except NotFound:
        raise Missing("org", slug) from None
    return _public(slug, data)


def show(vault: Vault, actor: Actor, slug: str) -> dict:
    actor.require("viewer", slug)
    return get(vault, slug)


def list_all(vault: Vault, actor: Actor, *, after: str | None = None, limit: int = PAGE_LIMIT) -> Page:
    """The orgs after `after` in name order: every org for an operator, a member's own for them."""
    actor.require("viewer")
    names = vault.app(lambda c: kv.keys(c, REGISTRY, ORGS)) if actor.is_operator else [actor.org]
    return page(names, lambda name: get(vault, name), after=after, limit=limit)
