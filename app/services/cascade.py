"""Deleting an org: its projects first (only when asked: their keys are shredded), then it."""

from __future__ import annotations

from ..vault import kv, namespaces
from ..vault.connection import Vault
from ..vault.layout import ORGS, REGISTRY, record
from . import audit, changes, orgs, projects, usage
from .actor import Actor
from .errors import HasProjects


def delete_org(vault: Vault, actor: Actor, slug: str, *, cascade: bool) -> None:
    """Delete the org (owners); with projects, only when `cascade` (HasProjects otherwise)."""
    actor.require("owner", slug)
    orgs.get(vault, slug)
    names = projects.slugs(vault, slug)
    if names and not cascade:
        raise HasProjects(slug, len(names))
    detail = f"cascade: {len(names)} projects" if names else None
    with audit.changing(actor, "org.deleted", audit.Target(name=slug), detail=detail):  # operator-level
        for name in names:
            projects.delete(vault, actor, slug, name)  # each recorded in the org's own chain
        namespaces.delete_and_wait(vault, None, slug)
        vault.app(lambda c: kv.delete(c, REGISTRY, record(ORGS, slug)))
        changes.publish(vault, "org-deleted", org=slug)
        usage.forget_scope(slug)
