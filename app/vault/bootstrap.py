"""Idempotent Vault set-up, run with an admin (root) token by `flask bootstrap`; and the
operator's Vault token for the UI, minted with the same admin token.

Creates JetPero's own mounts and admin signing key, writes the policies from
`vault-policies/`, and an AppRole for the app whose credentials go to a 0600 file.
Running it again changes nothing that works; it re-issues credentials only if the
file is missing or no longer logs in.
"""

from __future__ import annotations

import json
import os

import hvac
import hvac.exceptions as hx

from . import kv, policies, transit
from .layout import ADMIN_KEY, ADMIN_MOUNT, APP_POLICY, APPROLE, OPERATOR_POLICY, REGISTRY


def admin_client(addr: str, token: str, timeout: float) -> hvac.Client:
    """A client with an admin (root) token, for the commands that set Vault up."""
    return hvac.Client(url=addr, token=token, timeout=timeout)


def _works(client: hvac.Client, path: str) -> bool:
    try:
        with open(path, encoding="utf-8") as fh:
            creds = json.load(fh)
        client.auth.approle.login(role_id=creds["role_id"], secret_id=creds["secret_id"], use_token=False)
        return True
    except (OSError, ValueError, KeyError, TypeError, hx.VaultError):
        return False


def bootstrap(client: hvac.Client, approle_file: str) -> list[str]:
    """Bring Vault to JetPero's layout; return what was done (for the operator to read)."""
    done = []
    mounts = client.sys.list_mounted_secrets_engines()["data"]
    if f"{REGISTRY}/" not in mounts:
        kv.enable(client, REGISTRY, "JetPero: org registry, operators, change feed")
        done.append(f"mounted {REGISTRY}")
    if f"{ADMIN_MOUNT}/" not in mounts:
        transit.enable(client, ADMIN_MOUNT, "JetPero: admin-token signing")
        done.append(f"mounted {ADMIN_MOUNT}")
    try:
        transit.public_keys(client, ADMIN_MOUNT, ADMIN_KEY)
    except hx.InvalidPath:
        transit.create_signing_key(client, ADMIN_MOUNT, ADMIN_KEY)
        done.append("created admin signing key")
    for name in (APP_POLICY, OPERATOR_POLICY):
        policies.write(client, name)
    done.append("wrote policies")
    if "approle/" not in client.sys.list_auth_methods()["data"]:
        client.sys.enable_auth_method("approle")
        done.append("enabled approle")
    client.auth.approle.create_or_update_approle(
        APPROLE,
        token_policies=[APP_POLICY],
        token_ttl="1h",  # noqa: S106 - a lifetime, not a password
        token_max_ttl="1h",  # noqa: S106
        token_type="service",  # noqa: S106
    )
    if not _works(client, approle_file):
        role_id = client.auth.approle.read_role_id(APPROLE)["data"]["role_id"]
        secret_id = client.auth.approle.generate_secret_id(APPROLE)["data"]["secret_id"]
        directory = os.path.dirname(os.path.abspath(approle_file))
        os.makedirs(directory, exist_ok=True)
        descriptor = os.open(approle_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as fh:
            json.dump({"role_id": role_id, "secret_id": secret_id}, fh)
        os.chmod(approle_file, 0o600)
        done.append("issued app credentials")
    return done


def operator_vault_token(client: hvac.Client, ttl: str) -> str:
    """A Vault token for the UI: browse every org and project, never decrypt."""
    auth = client.auth.token.create(
        policies=[OPERATOR_POLICY], ttl=ttl, no_default_policy=False, display_name="jetpero-operator"
    )["auth"]
    return auth["client_token"]
