"""Projects: namespace `<org>/<project>` with transit, KV v2, a policy and a token role.

The project's record (display name, allowed origins) lives in its org's KV; creating it with
check-and-set is what claims the name, so two concurrent creations cannot both proceed.
"""

from __future__ import annotations

from . import changes, kv, namespaces, orgs, policies, transit
from .connection import PROJECT_TOKEN_ROLE, PROJECT_TOKEN_TTL, Vault
from .errors import Conflict

TRANSIT = "transit"
KV = "kv"
ENCRYPTION_KEY = "provider-keys"
SIGNING_KEY = "token-signing"
POLICY = "jetpero-project"


def _path(slug: str) -> str:
    return f"projects/{slug}"


def _record(org: str, slug: str, data: dict) -> dict:
    return {
        "org": org,
        "slug": slug,
        "display_name": data.get("display_name", slug),
        "allowed_origins": list(data.get("allowed_origins", [])),
        "created_at": data.get("created_at"),
        "updated_at": data.get("updated_at"),
    }


def _provision(vault: Vault, org: str, slug: str) -> None:
    ns = f"{org}/{slug}"
    vault.app(lambda c: transit.enable(c, TRANSIT, "JetPero: provider-key encryption, token signing"), namespace=ns)
    vault.app(lambda c: kv.enable(c, KV, "JetPero: provider records and token records"), namespace=ns)
    vault.app(lambda c: transit.create_encryption_key(c, TRANSIT, ENCRYPTION_KEY), namespace=ns)
    vault.app(lambda c: transit.create_signing_key(c, TRANSIT, SIGNING_KEY), namespace=ns)
    vault.app(lambda c: policies.write(c, POLICY), namespace=ns)
    vault.app(
        lambda c: c.auth.token.create_or_update_role(
            role_name=PROJECT_TOKEN_ROLE,
            allowed_policies=[POLICY],
            orphan=True,
            renewable=False,
            token_explicit_max_ttl=f"{PROJECT_TOKEN_TTL}s",
        ),
        namespace=ns,
    )


def create(vault: Vault, *, org: str, slug: str, display_name: str, allowed_origins: list[str]) -> dict:
    """All or nothing: on any failure the namespace and the record are removed again."""
    orgs.get(vault, org)
    stamp = orgs.now()
    record = {
        "display_name": display_name,
        "allowed_origins": allowed_origins,
        "created_at": stamp,
        "updated_at": stamp,
    }
    vault.app(lambda c: kv.write(c, orgs.ORG_MOUNT, _path(slug), record, cas=0), namespace=org)
    created_namespace = False
    try:
        if slug in vault.app(namespaces.children, namespace=org):
            raise Conflict()
        vault.app(lambda c: namespaces.create(c, slug, {"managed-by": "jetpero", "kind": "project"}), namespace=org)
        created_namespace = True
        _provision(vault, org, slug)
    except BaseException:
        if created_namespace:
            orgs.quietly(lambda: orgs.delete_namespace(vault, org, slug))
        orgs.quietly(lambda: vault.app(lambda c: kv.delete(c, orgs.ORG_MOUNT, _path(slug)), namespace=org))
        raise
    return _record(org, slug, record)


def get(vault: Vault, org: str, slug: str) -> dict:
    data, _ = vault.app(lambda c: kv.read(c, orgs.ORG_MOUNT, _path(slug)), namespace=org)
    return _record(org, slug, data)


def slugs(vault: Vault, org: str) -> list[str]:
    names = vault.app(lambda c: kv.keys(c, orgs.ORG_MOUNT, "projects"), namespace=org)
    return sorted(name for name in names if not name.endswith("/"))


def list_all(vault: Vault, org: str) -> list[dict]:
    orgs.get(vault, org)
    return [get(vault, org, slug) for slug in slugs(vault, org)]


def update(vault: Vault, org: str, slug: str, changes_: dict) -> dict:
    """Change display name and/or allowed origins (check-and-set: a concurrent edit is a 409)."""
    data, version = vault.app(lambda c: kv.read(c, orgs.ORG_MOUNT, _path(slug)), namespace=org)
    data = {**data, **changes_, "updated_at": orgs.now()}
    vault.app(lambda c: kv.write(c, orgs.ORG_MOUNT, _path(slug), data, cas=version), namespace=org)
    changes.publish(vault, "project-updated", org=org, project=slug)
    return _record(org, slug, data)


def delete(vault: Vault, org: str, slug: str) -> None:
    """Delete the namespace (every key, ciphertext and policy in it), then the record."""
    get(vault, org, slug)
    orgs.delete_namespace(vault, org, slug)
    vault.forget_project(org, slug)
    vault.app(lambda c: kv.delete(c, orgs.ORG_MOUNT, _path(slug)), namespace=org)
    changes.publish(vault, "project-deleted", org=org, project=slug)
