"""Provider records in a project's KV: transit ciphertext of the key plus non-secret settings.

Each write is a new KV version (the key's history) and uses check-and-set, so of two
concurrent writers one wins and the other gets Conflict.
"""

from __future__ import annotations

from config import Config

from ..rules import providers
from ..vault import kv, transit
from ..vault.connection import Vault
from ..vault.layout import ENCRYPTION_KEY, KV, PROVIDERS, TRANSIT, record
from . import audit, changes
from .actor import Actor
from .common import now
from .errors import Invalid

PUBLIC_FIELDS = ("template", "base_url", "auth_type", "auth_name", "key_hint", "created_at", "updated_at")


def _public(name: str, data: dict, version: int) -> dict:
    return {"name": name, "version": version, **{field: data.get(field) for field in PUBLIC_FIELDS}}


def put(vault: Vault, config: Config, actor: Actor, org: str, project: str, name: str, data: dict) -> dict:
    """Store or replace a provider (admins): `data` holds `template`, `api_key` and optionally
    `base_url`, `auth_type`, `auth_name`. The key is encrypted bound to the provider name."""
    actor.require("admin", org)
    settings = providers.settings(data)
    error = providers.base_url_error(settings["base_url"], allow_private=config.JETPERO_ALLOW_PRIVATE_UPSTREAMS)
    if error:
        raise Invalid(f"base_url {error}.")
    api_key = data["api_key"]

    def write(client) -> tuple[dict, int]:
        current, version = kv.read_or_empty(client, KV, record(PROVIDERS, name))
        stamp = now()
        stored = {
            **settings,
            "ciphertext": transit.encrypt(client, TRANSIT, ENCRYPTION_KEY, api_key, context=name),
            "created_at": current.get("created_at", stamp),
            "updated_at": stamp,
        }
        return stored, kv.write(client, KV, record(PROVIDERS, name), stored, cas=version)

    with audit.changing(actor, "provider.set", audit.Target(org, project, name)):
        stored, version = vault.project(org, project, write)
        changes.publish(vault, "provider-changed", org=org, project=project, provider=name)
    return _public(name, stored, version)


def _get(vault: Vault, org: str, project: str, name: str) -> dict:
    data, version = vault.project(org, project, lambda c: kv.read(c, KV, record(PROVIDERS, name)))
    return _public(name, data, version)


def names(vault: Vault, org: str, project: str) -> list[str]:
    """The project's provider names, sorted."""
    found = vault.project(org, project, lambda c: kv.keys(c, KV, PROVIDERS))
    return sorted(name for name in found if not name.endswith("/"))


def show(vault: Vault, actor: Actor, org: str, project: str, name: str) -> dict:
    actor.require("viewer", org)
    return _get(vault, org, project, name)


def list_all(vault: Vault, actor: Actor, org: str, project: str) -> list[dict]:
    actor.require("viewer", org)
    return [_get(vault, org, project, name) for name in names(vault, org, project)]


def delete(vault: Vault, actor: Actor, org: str, project: str, name: str) -> None:
    """Remove a provider and its key history (admins)."""
    actor.require("admin", org)
    _get(vault, org, project, name)
    with audit.changing(actor, "provider.deleted", audit.Target(org, project, name)):
        vault.project(org, project, lambda c: kv.delete(c, KV, record(PROVIDERS, name)))
        changes.publish(vault, "provider-changed", org=org, project=project, provider=name)


def load_with_key(vault: Vault, org: str, project: str, name: str) -> tuple[dict, str]:
    """(public record, plaintext key): only the proxy calls this, and caches the result."""

    def read(client) -> tuple[dict, str]:
        data, version = kv.read(client, KV, record(PROVIDERS, name))
        key = transit.decrypt(client, TRANSIT, ENCRYPTION_KEY, data["ciphertext"], context=name)
        return _public(name, data, version), key

    return vault.project(org, project, read)
