"""Projects: namespace `<org>/<project>` with transit, KV v2, a policy and a token role.

The project's record (display name, allowed origins) lives in its org's KV; creating it with
check-and-set is what claims the name, so two concurrent creations cannot both proceed.
"""

from __future__ import annotations

from ..vault import kv, namespaces, policies, transit
from ..vault.connection import PROJECT_TOKEN_TTL, Vault
from ..vault.errors import Conflict, NotFound
from ..vault.layout import (
    ENCRYPTION_KEY,
    KV,
    ORG_MOUNT,
    POLICY,
    PROJECT_TOKEN_ROLE,
    PROJECTS,
    SIGNING_KEY,
    TRANSIT,
    project_namespace,
    record,
)
from . import audit, changes, orgs, usage
from .actor import Actor
from .common import PAGE_LIMIT, Page, new_namespace, now, page, quietly
from .errors import Exists, Missing


def _public(org: str, slug: str, data: dict) -> dict:
    return {
        "org": org,
        "slug": slug,
        "display_name": data.get("display_name", slug),
        "allowed_origins": list(data.get("allowed_origins", [])),
        "created_at": data.get("created_at"),
        "updated_at": data.get("updated_at"),
    }


def _provision(vault: Vault, org: str, slug: str) -> None:
    ns = project_namespace(org, slug)
    vault.app(lambda c: transit.enable(c, TRANSIT, "JetPero: provider-key encryption, token signing"), namespace=ns)
    vault.app(lambda c: kv.enable(c, KV, "JetPero: provider records and token records"), namespace=ns)
    vault.app(lambda c: transit.create_encryption_key(c, TRANSIT, ENCRYPTION_KEY), namespace=ns)
    vault.app(lambda c: transit.create_signing_key(c, TRANSIT, SIGNING_KEY), namespace=ns)
    vault.app(lambda c: policies.write(c, POLICY), namespace=ns)
    vault.app(
        lambda c: policies.write_token_role(c, PROJECT_TOKEN_ROLE, policy=POLICY, ttl=PROJECT_TOKEN_TTL), namespace=ns
    )


def create(vault: Vault, actor: Actor, *, org: str, slug: str, display_name: str, allowed_origins: list[str]) -> dict:
    """All or nothing (admins): on any failure the namespace and the record are removed again."""
    actor.require("admin", org)
    orgs.get(vault, org)
    stamp = now()
    data = {"display_name": display_name, "allowed_origins": allowed_origins, "created_at": stamp, "updated_at": stamp}
    with audit.changing(actor, "project.created", audit.Target(org, slug)):
        try:
            vault.app(lambda c: kv.write(c, ORG_MOUNT, record(PROJECTS, slug), data, cas=0), namespace=org)
        except Conflict:
            raise Exists("project", f"{org}/{slug}") from None
        try:
            new_namespace(vault, org, slug, "project", lambda: _provision(vault, org, slug))
        except BaseException:
            quietly(lambda: vault.app(lambda c: kv.delete(c, ORG_MOUNT, record(PROJECTS, slug)), namespace=org))
            raise
    # Workers that remembered it absent (a token naming it came first) forget that; best effort:
    # they also forget it within `negative.Absent.ttl`.
    quietly(lambda: changes.publish(vault, "project-created", org=org, project=slug))
    return _public(org, slug, data)


def get(vault: Vault, org: str, slug: str) -> dict:
    """The project's record (Missing when there is none); no authorisation: callers check."""
    return _public(org, slug, _read(vault, org, slug)[0])


def _read(vault: Vault, org: str, slug: str) -> tuple[dict, int]:
    try:
        return vault.app(lambda c: kv.read(c, ORG_MOUNT, record(PROJECTS, slug)), namespace=org)
    except NotFound:
        orgs.get(vault, org)  # Missing("org") when it is the org that is missing
        raise Missing("project", f"{org}/{slug}") from None


def show(vault: Vault, actor: Actor, org: str, slug: str) -> dict:
    actor.require("viewer", org)
    return get(vault, org, slug)


def slugs(vault: Vault, org: str) -> list[str]:
    names = vault.app(lambda c: kv.keys(c, ORG_MOUNT, PROJECTS), namespace=org)
    return sorted(name for name in names if not name.endswith("/"))


def list_all(vault: Vault, actor: Actor, org: str, *, after: str | None = None, limit: int = PAGE_LIMIT) -> Page:
    """The org's projects after `after` in slug order."""
    actor.require("viewer", org)
    orgs.get(vault, org)
    return page(slugs(vault, org), lambda slug: get(vault, org, slug), after=after, limit=limit)


def update(vault: Vault, actor: Actor, org: str, slug: str, edits: dict) -> dict:
    """Change display name and/or allowed origins (admins; check-and-set: a concurrent edit is a 409)."""
    actor.require("admin", org)
    data, version = _read(vault, org, slug)
    data = {**data, **edits, "updated_at": now()}
    with audit.changing(actor, "project.updated", audit.Target(org, slug), detail=", ".join(sorted(edits))):
        vault.app(lambda c: kv.write(c, ORG_MOUNT, record(PROJECTS, slug), data, cas=version), namespace=org)
        changes.publish(vault, "project-updated", org=org, project=slug)
    return _public(org, slug, data)


def delete(vault: Vault, actor: Actor, org: str, slug: str) -> None:
    """Delete the namespace (every key, ciphertext and policy in it), then the record (admins)."""
    actor.require("admin", org)
    get(vault, org, slug)
    with audit.changing(actor, "project.deleted", audit.Target(org, slug)):
        namespaces.delete_and_wait(vault, org, slug)
        vault.forget_project(org, slug)
        vault.app(lambda c: kv.delete(c, ORG_MOUNT, record(PROJECTS, slug)), namespace=org)
        changes.publish(vault, "project-deleted", org=org, project=slug)
        usage.forget_scope(org, slug)
