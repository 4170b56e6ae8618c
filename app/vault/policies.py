"""ACL policies, loaded from the HCL files in `vault-policies/` (their only source)."""

from __future__ import annotations

from pathlib import Path

import hvac

POLICY_DIR = Path(__file__).resolve().parents[2] / "vault-policies"


def text(name: str) -> str:
    """The policy file `vault-policies/<name>.hcl`."""
    return (POLICY_DIR / f"{name}.hcl").read_text(encoding="utf-8")


def write(client: hvac.Client, name: str, policy: str | None = None) -> None:
    client.sys.create_or_update_acl_policy(name=name, policy=text(name) if policy is None else policy)
