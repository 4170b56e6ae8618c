"""ACL policies, loaded from the HCL files in `vault-policies/` (their only source), and the
token role that binds the tokens it mints to one policy."""

from __future__ import annotations

from pathlib import Path

import hvac

POLICY_DIR = Path(__file__).resolve().parents[2] / "vault-policies"


def text(name: str) -> str:
    """The policy file `vault-policies/<name>.hcl`."""
    return (POLICY_DIR / f"{name}.hcl").read_text(encoding="utf-8")


def write(client: hvac.Client, name: str, policy: str | None = None) -> None:
    client.sys.create_or_update_acl_policy(name=name, policy=text(name) if policy is None else policy)


def write_token_role(client: hvac.Client, role: str, *, policy: str, ttl: int) -> None:
    """A role minting orphan, non-renewable tokens bound to `policy` alone, living `ttl` seconds at most."""
    client.auth.token.create_or_update_role(
        role_name=role,
        allowed_policies=[policy],
        orphan=True,
        renewable=False,
        token_explicit_max_ttl=f"{ttl}s",
    )
