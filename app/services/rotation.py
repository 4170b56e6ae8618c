"""Rotation of what JetPero keeps in Vault: project tokens (with a grace), the signing keys
(project and admin), the project's encryption key (rotate, rewrap, retire), the key settings
every project gets, and the org's list of provider keys overdue for rotation.

Each step is safe to re-run: a rewrap skips what is already under the newest version, raising
`min_decryption_version` to a value it already has changes nothing.
"""

from __future__ import annotations

import time

from config import Config

from ..rules import rotation as due_rules
from ..vault import kv, transit
from ..vault.connection import Vault
from ..vault.layout import (
    ADMIN_KEY,
    ADMIN_MOUNT,
    ENCRYPTION_KEY,
    KV,
    PROVIDERS,
    SIGNING_KEY,
    TOKENS,
    TRANSIT,
    project_namespace,
    record,
)
from . import audit, changes, project_tokens, projects, provider_keys
from .actor import Actor
from .common import MAX_PAGE_LIMIT, checked_id, now, quietly
from .errors import Invalid

DAY = 86400


def _every_provider(vault: Vault, actor: Actor, org: str, project: str):
    after = None
    while True:
        page = provider_keys.list_all(vault, actor, org, project, after=after, limit=MAX_PAGE_LIMIT)
        yield from page.items
        if page.next is None:
            return
        after = page.next


def due(vault: Vault, actor: Actor, org: str) -> list[dict]:
    """Every provider key of the org past its `rotate_by` (viewers)."""
    actor.require("viewer", org)
    found = []
    for project in projects.slugs(vault, org):
        for provider in _every_provider(vault, actor, org, project):
            if provider["overdue"]:
                found.append(
                    {
                        "project": project,
                        "provider": provider["name"],
                        "rotate_by": provider["rotate_by"],
                        "updated_at": provider["updated_at"],
                        "key_hint": provider["key_hint"],
                    }
                )
    return found


# -- current ciphertexts behind the newest encryption-key version -------------------------------
def behind(vault: Vault, org: str, project: str, latest: int) -> list[str]:
    """The live providers whose current ciphertext is under an encryption-key version before `latest`."""

    def find(client) -> list[str]:
        found = []
        for name in provider_keys.names(vault, org, project):
            data, _ = kv.read_or_empty(client, KV, record(PROVIDERS, name))
            if data.get("ciphertext") and transit.ciphertext_version(data["ciphertext"]) < latest:
                found.append(name)
        return found

    return vault.project(org, project, find)


def rewrap_current(vault: Vault, org: str, project: str, name: str, latest: int) -> bool:
    """Rewrap the live version's ciphertext to the latest encryption-key version as a new version
    (its key age unchanged); False when it already is (or there is no live version)."""
    path = record(PROVIDERS, name)

    def run(client) -> bool:
        data, version = kv.read_or_empty(client, KV, path)
        if not data.get("ciphertext") or transit.ciphertext_version(data["ciphertext"]) >= latest:
            return False
        stored = {
            **data,
            "ciphertext": transit.rewrap(client, TRANSIT, ENCRYPTION_KEY, data["ciphertext"], context=name),
            "change": "rewrapped",
            "rewrapped_at": now(),
        }
        kv.write(client, KV, path, stored, cas=version)
        return True

    return vault.project(org, project, run)


# -- project tokens -----------------------------------------------------------------------------
def rotate_token(vault: Vault, config: Config, actor: Actor, org: str, project: str, token_id: str, grace: int) -> dict:
    """A replacement token (same name, environment, scope, origins; value shown once) and the old
    one retired `grace` seconds from now (developers): every worker refuses it after that."""
    actor.require("developer", org)
    token_id = checked_id(token_id, project_tokens.ID_LENGTH)
    if grace > config.JETPERO_TOKEN_ROTATION_GRACE:
        raise Invalid(f"grace_seconds is above the maximum of {config.JETPERO_TOKEN_ROTATION_GRACE} seconds.")
    path = record(TOKENS, token_id)
    old, version = vault.project(org, project, lambda c: kv.read(c, KV, path))
    if old.get("revoked_at") or old.get("retire_at"):
        raise Invalid("This token is already revoked or rotated.")
    lifetime = old["expires_at"] - due_rules.epoch(old["created_at"])
    retire_at = min(int(time.time()) + grace, old["expires_at"])
    with audit.changing(actor, "token.rotated", audit.Target(org, project, token_id), detail=f"grace {grace}s"):
        replacement = project_tokens.issue(
            vault,
            config,
            actor,
            org,
            project,
            {
                "name": old["name"],
                "environment": old["environment"],
                "expires_in": max(60, min(lifetime, config.JETPERO_MAX_TOKEN_TTL)),
                "scope": old["scope"],
                "allowed_origins": old["allowed_origins"],
            },
        )
        try:  # check-and-set: of two rotations of one token, one wins; the loser's replacement goes
            vault.project(org, project, lambda c: kv.write(c, KV, path, {**old, "retire_at": retire_at}, cas=version))
        except BaseException:
            new = record(TOKENS, replacement["id"])
            quietly(lambda: vault.project(org, project, lambda c: kv.delete(c, KV, new)))
            raise
    changes.publish(vault, "token-retiring", org=org, project=project, token=token_id)
    return {**replacement, "replaces": token_id, "replaced_until": retire_at}


# -- signing keys -------------------------------------------------------------------------------
def _status(info: dict) -> dict:
    return {
        "latest_version": info["latest_version"],
        "min_version": max(1, info["min_decryption_version"]),
        "auto_rotate_days": info["auto_rotate_period"] // DAY,
        "versions": sorted(info["versions"]),
    }


def _project_key(vault: Vault, org: str, project: str, key: str, fn) -> dict:
    """Run `fn(client)` on the project's key with the app identity; the key's status after it."""
    namespace = project_namespace(org, project)
    vault.app(fn, namespace=namespace)
    return _status(vault.app(lambda c: transit.key_info(c, TRANSIT, key), namespace=namespace))


def signing_key(vault: Vault, actor: Actor, org: str, project: str) -> dict:
    actor.require("viewer", org)
    return _project_key(vault, org, project, SIGNING_KEY, lambda c: None)


def rotate_signing_key(vault: Vault, actor: Actor, org: str, project: str) -> dict:
    """A new signing-key version (admins): new tokens name it in `kid`, older ones keep verifying."""
    actor.require("admin", org)
    projects.get(vault, org, project)
    with audit.changing(actor, "signing_key.rotated", audit.Target(org, project)):
        return _project_key(vault, org, project, SIGNING_KEY, lambda c: transit.rotate(c, TRANSIT, SIGNING_KEY))


def _check_floor(min_version: int, latest: int) -> None:
    if not 1 <= min_version <= latest:
        raise Invalid(f"min_version must be between 1 and the latest version, {latest}.")


def retire_signing_key(vault: Vault, actor: Actor, org: str, project: str, min_version: int) -> dict:
    """Tokens signed by versions below `min_version` stop verifying, on every worker (admins)."""
    actor.require("admin", org)
    _check_floor(min_version, signing_key(vault, actor, org, project)["latest_version"])
    with audit.changing(actor, "signing_key.retired", audit.Target(org, project), detail=f"below {min_version}"):
        status = _project_key(
            vault,
            org,
            project,
            SIGNING_KEY,
            lambda c: transit.configure(c, TRANSIT, SIGNING_KEY, min_decryption_version=min_version),
        )
    changes.publish(vault, "signing-key-retired", org=org, project=project, min_version=str(min_version))
    return status


def rotate_admin_key(vault: Vault, actor: Actor) -> dict:
    """A new version of JetPero's admin signing key (command line)."""
    with audit.changing(actor, "admin_signing_key.rotated", audit.Target(None)):
        vault.app(lambda c: transit.rotate(c, ADMIN_MOUNT, ADMIN_KEY))
    return _status(vault.app(lambda c: transit.key_info(c, ADMIN_MOUNT, ADMIN_KEY)))


def retire_admin_key(vault: Vault, actor: Actor, min_version: int) -> dict:
    """Admin tokens signed below `min_version` stop verifying on every worker (command line)."""
    _check_floor(min_version, vault.app(lambda c: transit.key_info(c, ADMIN_MOUNT, ADMIN_KEY))["latest_version"])
    with audit.changing(actor, "admin_signing_key.retired", audit.Target(None), detail=f"below {min_version}"):
        vault.app(lambda c: transit.configure(c, ADMIN_MOUNT, ADMIN_KEY, min_decryption_version=min_version))
    changes.publish(vault, "signing-key-retired", org="", project="", min_version=str(min_version))
    return _status(vault.app(lambda c: transit.key_info(c, ADMIN_MOUNT, ADMIN_KEY)))


# -- the encryption key -------------------------------------------------------------------------
def encryption_key(vault: Vault, actor: Actor, org: str, project: str) -> dict:
    actor.require("viewer", org)
    return _project_key(vault, org, project, ENCRYPTION_KEY, lambda c: None)


def rotate_encryption_key(vault: Vault, actor: Actor, org: str, project: str) -> dict:
    """Step 1 (admins): a new encryption-key version; new writes use it, old ciphertexts still decrypt."""
    actor.require("admin", org)
    projects.get(vault, org, project)
    with audit.changing(actor, "encryption_key.rotated", audit.Target(org, project)):
        return _project_key(vault, org, project, ENCRYPTION_KEY, lambda c: transit.rotate(c, TRANSIT, ENCRYPTION_KEY))


def rewrap(vault: Vault, actor: Actor, org: str, project: str, *, retire: bool) -> dict:
    """Steps 2 and 3 (admins): every provider's current ciphertext rewrapped to the newest version,
    then, with `retire`, older versions refused for decryption (history under them: listed, not restorable)."""
    actor.require("admin", org)
    latest = encryption_key(vault, actor, org, project)["latest_version"]
    action = "encryption_key.retired" if retire else "encryption_key.rewrapped"
    with audit.changing(actor, action, audit.Target(org, project), detail=f"to version {latest}"):
        rewrapped = [
            name
            for name in provider_keys.names(vault, org, project)
            if rewrap_current(vault, org, project, name, latest)
        ]
        fn = (
            (lambda c: transit.configure(c, TRANSIT, ENCRYPTION_KEY, min_decryption_version=latest))
            if retire
            else (lambda c: None)
        )
        status = _project_key(vault, org, project, ENCRYPTION_KEY, fn)
    return {**status, "rewrapped": rewrapped}


def apply_settings(vault: Vault, config: Config, org: str, project: str) -> None:
    """The project's KV history length and its transit keys' automatic rotation (idempotent)."""
    namespace = project_namespace(org, project)
    period = config.JETPERO_TRANSIT_AUTO_ROTATE * DAY
    vault.app(lambda c: kv.configure(c, KV, max_versions=config.JETPERO_PROVIDER_KEY_VERSIONS), namespace=namespace)
    for key in (ENCRYPTION_KEY, SIGNING_KEY):
        vault.app(lambda c, key=key: transit.configure(c, TRANSIT, key, auto_rotate=period), namespace=namespace)
