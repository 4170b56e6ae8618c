"""Provider records in a project's KV: transit ciphertext of the key plus non-secret settings.

Each write is a new KV version (the key's history) and uses check-and-set, so of two
concurrent writers one wins and the other gets Conflict.
"""

from __future__ import annotations

from config import Config

from ..rules import providers
from ..rules import rotation as key_rotation
from ..vault import kv, transit
from ..vault.connection import Vault
from ..vault.errors import NotFound
from ..vault.layout import ENCRYPTION_KEY, KV, PROVIDERS, TRANSIT, project_namespace, record
from . import audit, changes, projects
from .actor import Actor
from .common import PAGE_LIMIT, Page, now, page, read_each
from .errors import Invalid, Missing

PUBLIC_FIELDS = (
    "template",
    "base_url",
    "auth_type",
    "auth_name",
    "key_hint",
    "created_at",
    "updated_at",
    "rotate_every_days",
)


def _public(name: str, data: dict, version: int) -> dict:
    public = {"name": name, "version": version, **{field: data.get(field) for field in PUBLIC_FIELDS}}
    return {**public, **key_rotation.due(data)}


def put(vault: Vault, config: Config, actor: Actor, org: str, project: str, name: str, data: dict) -> dict:
    """Store or replace a provider (admins): `data` holds `template`, `api_key` and optionally
    `base_url`, `auth_type`, `auth_name`. The key is encrypted bound to the provider name."""
    actor.require("admin", org)
    settings = providers.settings(data)
    error = providers.base_url_error(settings["base_url"], allow_private=config.JETPERO_ALLOW_PRIVATE_UPSTREAMS)
    if error:
        raise Invalid(f"base_url {error}.", field="base_url")
    api_key = data["api_key"]

    def write(client) -> tuple[dict, int]:
        current, version = kv.read_or_empty(client, KV, record(PROVIDERS, name))
        stamp = now()
        stored = {
            **settings,
            "ciphertext": transit.encrypt(client, TRANSIT, ENCRYPTION_KEY, api_key, context=name),
            "created_at": current.get("created_at", stamp),
            "updated_at": stamp,
            "updated_by": actor.subject,
            "rotate_every_days": current.get("rotate_every_days"),
        }
        return stored, kv.write(client, KV, record(PROVIDERS, name), stored, cas=version)

    with audit.changing(actor, "provider.set", audit.Target(org, project, name)):
        try:
            stored, version = vault.project(org, project, write)
        except NotFound:
            projects.get(vault, org, project)  # Missing("org"/"project"): the only thing a write finds missing
            raise
        changes.publish(vault, "provider-changed", org=org, project=project, provider=name)
    return _public(name, stored, version)


def _get(vault: Vault, org: str, project: str, name: str) -> dict:
    try:
        data, version = vault.project(org, project, lambda c: kv.read(c, KV, record(PROVIDERS, name)))
    except NotFound:
        projects.get(vault, org, project)  # Missing("org"/"project") when that is what is missing
        raise Missing("provider", f"{org}/{project}/{name}") from None
    return _public(name, data, version)


def names(vault: Vault, org: str, project: str) -> list[str]:
    """The project's provider names, sorted (a metadata read each: for jobs, not for requests)."""

    def live(client) -> list[str]:
        found = [name for name in kv.keys(client, KV, PROVIDERS) if not name.endswith("/")]
        return [name for name in found if _is_live(kv.metadata(client, KV, record(PROVIDERS, name)))]

    return sorted(vault.project(org, project, live))


def _is_live(meta: dict) -> bool:
    """A record whose latest version is not deleted (a deleted provider keeps its history)."""
    latest = meta["versions"].get(str(meta["current_version"]), {})
    return not latest.get("deletion_time") and not latest.get("destroyed")


def unknown(vault: Vault, org: str, project: str, wanted: list[str]) -> list[str]:
    """Those of `wanted` the project has no provider of (one metadata read each, however many
    providers the project has); a deleted one (its history kept) is unknown."""

    def known(name: str) -> dict:
        meta = vault.project(org, project, lambda c: kv.metadata(c, KV, record(PROVIDERS, name)))
        if not _is_live(meta):
            raise NotFound()
        return {}

    return [name for name, found in zip(wanted, read_each(known, wanted), strict=True) if found is None]


def show(vault: Vault, actor: Actor, org: str, project: str, name: str) -> dict:
    actor.require("viewer", org)
    return _get(vault, org, project, name)


def list_all(
    vault: Vault, actor: Actor, org: str, project: str, *, after: str | None = None, limit: int = PAGE_LIMIT
) -> Page:
    """The project's providers after `after` in name order."""
    actor.require("viewer", org)
    names = vault.project(org, project, lambda c: kv.keys(c, KV, PROVIDERS))
    return page(names, lambda name: _get(vault, org, project, name), after=after, limit=limit)


def delete(vault: Vault, actor: Actor, org: str, project: str, name: str) -> None:
    """Remove a provider (admins): its latest version is deleted, its key history kept (`purge` destroys it)."""
    actor.require("admin", org)
    _get(vault, org, project, name)
    with audit.changing(actor, "provider.deleted", audit.Target(org, project, name)):
        vault.project(org, project, lambda c: _tombstone(c, name, actor))
        changes.publish(vault, "provider-changed", org=org, project=project, provider=name)


def load_with_key(vault: Vault, org: str, project: str, name: str) -> tuple[dict, str]:
    """(public record, plaintext key): only the proxy calls this, and caches the result."""

    def read(client) -> tuple[dict, str]:
        data, version = kv.read(client, KV, record(PROVIDERS, name))
        key = transit.decrypt(client, TRANSIT, ENCRYPTION_KEY, data["ciphertext"], context=name)
        return _public(name, data, version), key

    return vault.project(org, project, read)


# -- history, rotation, restore, purge ---------------------------------------------------------
# A deleted provider's last version is a tombstone (who deleted it, when), itself deleted in KV:
# reads see no provider, every earlier version stays readable until `purge`.


def _tombstone(client, name: str, actor: Actor) -> None:
    path = record(PROVIDERS, name)
    _, version = kv.read(client, KV, path)
    kv.write(client, KV, path, {"change": "deleted", "updated_at": now(), "updated_by": actor.subject}, cas=version)
    kv.soft_delete(client, KV, path)


def _version_row(version: int, meta: dict, data: dict | None, current: int, floor: int) -> dict:
    data = data or {}
    live = not meta.get("deletion_time") and not meta.get("destroyed")
    under = transit.ciphertext_version(data["ciphertext"]) if data.get("ciphertext") else None
    return {
        "version": version,
        "created_at": meta.get("created_time", "")[:19] + "Z",
        "created_by": data.get("updated_by"),
        "change": data.get("change", "set") if live else "deleted",
        "key_hint": data.get("key_hint"),
        "current": live and version == current,
        "encryption_key_version": under,
        "restorable": under is not None and under >= floor,
    }


def _decryption_floor(vault: Vault, org: str, project: str) -> int:
    """The oldest encryption-key version that still decrypts (key metadata: the app identity reads it)."""
    info = vault.app(lambda c: transit.key_info(c, TRANSIT, ENCRYPTION_KEY), namespace=project_namespace(org, project))
    return info["min_decryption_version"]


def versions(vault: Vault, actor: Actor, org: str, project: str, name: str) -> list[dict]:
    """Every kept version of the provider, oldest first (viewers); also after a delete."""
    actor.require("viewer", org)
    path = record(PROVIDERS, name)

    floor = _decryption_floor(vault, org, project)

    def read(client) -> list[dict]:
        current, kept = kv.history(client, KV, path)
        rows = []
        for version, meta in sorted(kept.items()):
            readable = not meta.get("deletion_time") and not meta.get("destroyed")
            data = kv.read_version(client, KV, path, version) if readable else None
            rows.append(_version_row(version, meta, data, current, floor))
        return rows

    return vault.project(org, project, read)


def rotate(vault: Vault, actor: Actor, org: str, project: str, name: str, data: dict, verify=None) -> dict:
    """Replace the key of an existing provider, its settings kept (admins). `verify(settings, key)`,
    when given, is called first and raises if the provider refuses the key. Check-and-set: a
    concurrent PUT or rotation makes this a Conflict."""
    actor.require("admin", org)
    api_key = data["api_key"]
    error = providers.key_error(api_key)
    if error:
        raise Invalid(f"api_key {error}.")
    path = record(PROVIDERS, name)
    current, version = vault.project(org, project, lambda c: kv.read(c, KV, path))
    if verify is not None:
        verify(current, api_key)
    with audit.changing(actor, "provider.rotated", audit.Target(org, project, name)):

        def write(client) -> tuple[dict, int]:
            stored = {
                **current,
                "ciphertext": transit.encrypt(client, TRANSIT, ENCRYPTION_KEY, api_key, context=name),
                "key_hint": providers.hint(api_key),
                "updated_at": now(),
                "updated_by": actor.subject,
                "change": "rotated",
                "rotate_every_days": data.get("rotate_every_days", current.get("rotate_every_days")),
            }
            stored.pop("restored_from", None)
            return stored, kv.write(client, KV, path, stored, cas=version)

        stored, written = vault.project(org, project, write)
    changes.publish(vault, "provider-changed", org=org, project=project, provider=name)
    return _public(name, stored, written)


def restore(vault: Vault, actor: Actor, org: str, project: str, name: str, version: int) -> dict:
    """Make version `version` current again as a new version, its ciphertext rewrapped to the
    newest encryption-key version (admins). Refused for a deleted version, a tombstone, or one
    whose ciphertext is under an encryption-key version retired by a rewrap."""
    actor.require("admin", org)
    path = record(PROVIDERS, name)

    floor = _decryption_floor(vault, org, project)

    def load(client) -> tuple[dict, int, int]:
        current, kept = kv.history(client, KV, path)
        meta = kept.get(version)
        if meta is None or meta.get("destroyed") or meta.get("deletion_time"):
            raise Invalid(f"Version {version} is not kept (deleted or beyond the history): it cannot be restored.")
        old = kv.read_version(client, KV, path, version) or {}
        if not old.get("ciphertext"):
            raise Invalid(f"Version {version} records a deletion, not a key: restore an earlier version.")
        under = transit.ciphertext_version(old["ciphertext"])
        if under < floor:
            raise Invalid(
                f"Version {version}'s key is encrypted under encryption-key version {under}, retired by a rewrap "
                f"(versions below {floor} no longer decrypt): it cannot be restored; store the key again instead."
            )
        return old, current, under

    old, current, _ = vault.project(org, project, load)
    with audit.changing(actor, "provider.restored", audit.Target(org, project, name), detail=f"version {version}"):

        def write(client) -> tuple[dict, int]:
            stored = {
                **old,
                "ciphertext": transit.rewrap(client, TRANSIT, ENCRYPTION_KEY, old["ciphertext"], context=name),
                "change": "restored",
                "restored_from": version,
                "restored_at": now(),
                "updated_by": actor.subject,
            }
            return stored, kv.write(client, KV, path, stored, cas=current)

        stored, written = vault.project(org, project, write)
    changes.publish(vault, "provider-changed", org=org, project=project, provider=name)
    return _public(name, stored, written)


def set_rotation_policy(vault: Vault, actor: Actor, org: str, project: str, name: str, days: int | None) -> dict:
    """Set (or clear, with None) how many days a key may be used before it is overdue (admins)."""
    actor.require("admin", org)
    path = record(PROVIDERS, name)
    with audit.changing(actor, "provider.rotation_policy_set", audit.Target(org, project, name)):

        def write(client) -> tuple[dict, int]:
            current, version = kv.read(client, KV, path)
            stored = {**current, "rotate_every_days": days}
            return stored, kv.write(client, KV, path, stored, cas=version)

        stored, written = vault.project(org, project, write)
    return _public(name, stored, written)


def purge(vault: Vault, actor: Actor, org: str, project: str, name: str) -> None:
    """Destroy the provider and every kept version of its key (admins); also after a delete."""
    actor.require("admin", org)
    path = record(PROVIDERS, name)
    vault.project(org, project, lambda c: kv.history(c, KV, path))  # NotFound when there is nothing
    with audit.changing(actor, "provider.purged", audit.Target(org, project, name)):
        vault.project(org, project, lambda c: kv.delete(c, KV, path))
    changes.publish(vault, "provider-changed", org=org, project=project, provider=name)
