"""Provider records in a project's KV: transit ciphertext of the key plus non-secret settings.

Each write is a new KV version (the key's history) and uses check-and-set, so of two
concurrent writers one wins and the other gets Conflict.
"""

from __future__ import annotations

from . import changes, kv, transit
from .connection import Vault
from .orgs import now
from .projects import ENCRYPTION_KEY, KV, TRANSIT

PUBLIC_FIELDS = ("template", "base_url", "auth_type", "auth_name", "key_hint", "created_at", "updated_at")


def _path(name: str) -> str:
    return f"providers/{name}"


def _public(name: str, data: dict, version: int) -> dict:
    return {"name": name, "version": version, **{field: data.get(field) for field in PUBLIC_FIELDS}}


def put(vault: Vault, org: str, project: str, name: str, *, api_key: str, settings: dict) -> dict:
    """Encrypt `api_key` bound to the provider name and store it with `settings`."""

    def write(client) -> tuple[dict, int]:
        current, version = kv.read_or_empty(client, KV, _path(name))
        stamp = now()
        data = {
            **settings,
            "ciphertext": transit.encrypt(client, TRANSIT, ENCRYPTION_KEY, api_key, context=name),
            "created_at": current.get("created_at", stamp),
            "updated_at": stamp,
        }
        return data, kv.write(client, KV, _path(name), data, cas=version)

    data, version = vault.project(org, project, write)
    changes.publish(vault, "provider-changed", org=org, project=project, provider=name)
    return _public(name, data, version)


def get(vault: Vault, org: str, project: str, name: str) -> dict:
    data, version = vault.project(org, project, lambda c: kv.read(c, KV, _path(name)))
    return _public(name, data, version)


def list_all(vault: Vault, org: str, project: str) -> list[dict]:
    names = vault.project(org, project, lambda c: kv.keys(c, KV, "providers"))
    return [get(vault, org, project, name) for name in sorted(names) if not name.endswith("/")]


def delete(vault: Vault, org: str, project: str, name: str) -> None:
    get(vault, org, project, name)
    vault.project(org, project, lambda c: kv.delete(c, KV, _path(name)))
    changes.publish(vault, "provider-changed", org=org, project=project, provider=name)


def load_with_key(vault: Vault, org: str, project: str, name: str) -> tuple[dict, str]:
    """(public record, plaintext key): only the proxy calls this, and caches the result."""

    def read(client) -> tuple[dict, str]:
        data, version = kv.read(client, KV, _path(name))
        key = transit.decrypt(client, TRANSIT, ENCRYPTION_KEY, data["ciphertext"], context=name)
        return _public(name, data, version), key

    return vault.project(org, project, read)
