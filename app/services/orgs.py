"""Organisations: a registry record in JetPero's KV plus a namespace `<org>` with its own KV."""

from __future__ import annotations

import logging
import time

from . import changes, kv, namespaces
from .connection import Vault
from .errors import Conflict, NotFound, VaultError

log = logging.getLogger("jetpero.vault")

REGISTRY = "jetpero-kv"
ORG_MOUNT = "jetpero"  # KV v2 mount inside each org namespace: members, project registry
_DELETE_WAIT = 15.0


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _record(slug: str, data: dict) -> dict:
    return {"slug": slug, "display_name": data.get("display_name", slug), "created_at": data.get("created_at")}


def create(vault: Vault, *, slug: str, display_name: str) -> dict:
    """Claim the name, then make the namespace and its KV; undo everything on failure."""
    record = {"display_name": display_name, "created_at": now()}
    vault.app(lambda c: kv.write(c, REGISTRY, f"orgs/{slug}", record, cas=0))  # Conflict if taken
    created_namespace = False
    try:
        if slug in vault.app(namespaces.children):
            raise Conflict()
        vault.app(lambda c: namespaces.create(c, slug, {"managed-by": "jetpero", "kind": "org"}))
        created_namespace = True
        vault.app(lambda c: kv.enable(c, ORG_MOUNT, "JetPero org records"), namespace=slug)
    except BaseException:
        if created_namespace:
            quietly(lambda: delete_namespace(vault, None, slug))
        quietly(lambda: vault.app(lambda c: kv.delete(c, REGISTRY, f"orgs/{slug}")))
        raise
    return _record(slug, record)


def get(vault: Vault, slug: str) -> dict:
    data, _ = vault.app(lambda c: kv.read(c, REGISTRY, f"orgs/{slug}"))
    return _record(slug, data)


def list_all(vault: Vault) -> list[dict]:
    names = vault.app(lambda c: kv.keys(c, REGISTRY, "orgs"))
    return [get(vault, name) for name in sorted(names) if not name.endswith("/")]


def delete(vault: Vault, slug: str, *, cascade: bool) -> None:
    """Delete the org; with projects, only when `cascade` (their keys are shredded)."""
    from . import projects  # projects build on orgs

    get(vault, slug)
    names = projects.slugs(vault, slug)
    if names and not cascade:
        raise Conflict()
    for name in names:
        projects.delete(vault, slug, name)
    delete_namespace(vault, None, slug)
    vault.app(lambda c: kv.delete(c, REGISTRY, f"orgs/{slug}"))
    changes.publish(vault, "org-deleted", org=slug)


def delete_namespace(vault: Vault, parent: str | None, name: str) -> None:
    """Delete a namespace and wait until Vault has really removed it."""
    deadline = time.monotonic() + _DELETE_WAIT
    while True:
        try:
            vault.app(lambda c: namespaces.delete(c, name), namespace=parent)
        except NotFound:
            return
        except VaultError:
            if time.monotonic() > deadline:
                raise
        if name not in vault.app(namespaces.children, namespace=parent):
            return
        if time.monotonic() > deadline:
            raise Conflict()
        time.sleep(0.1)


def quietly(fn) -> None:
    """Best-effort rollback step; the error that caused the rollback is the one re-raised."""
    try:
        fn()
    except Exception as exc:  # noqa: BLE001
        log.warning("rollback step failed: %s", type(exc).__name__)
