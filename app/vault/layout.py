"""Every name JetPero gives things in Vault: mounts, keys, policies, roles and record paths.

The HCL files in `vault-policies/` grant access to these same names.
"""

from __future__ import annotations

# Root namespace: JetPero's own mounts.
REGISTRY = "jetpero-kv"  # KV v2: org registry, operators, change feed
ADMIN_MOUNT = "jetpero-transit"  # transit: the key that signs admin tokens
ADMIN_KEY = "admin"
CHANGES = "changes"  # the change feed's record in REGISTRY

# Identities.
APPROLE = "jetpero"
APP_POLICY = "jetpero-app"
OPERATOR_POLICY = "jetpero-operator"

# Org namespace `<org>`.
ORG_MOUNT = "jetpero"  # KV v2: members, project registry

# Project namespace `<org>/<project>`.
TRANSIT = "transit"
KV = "kv"  # KV v2: provider records, token records, identity providers
ENCRYPTION_KEY = "provider-keys"
SIGNING_KEY = "token-signing"
POLICY = "jetpero-project"
PROJECT_TOKEN_ROLE = "jetpero-project"  # noqa: S105 - a role name

# Folders of records, and the path of one record in each.
ORGS = "orgs"  # in REGISTRY
OPERATORS = "operators"  # in REGISTRY
MEMBERS = "members"  # in ORG_MOUNT
PROJECTS = "projects"  # in ORG_MOUNT
PROVIDERS = "providers"  # in KV
TOKENS = "tokens"  # in KV
IDPS = "idps"  # in KV: trusted identity providers and their end-user policies
PROJECT_POLICY = "policies/project"  # in KV: the project's limits, allowlist, end-user limits
TOKEN_POLICIES = "policies/tokens"  # noqa: S105 - in KV: one token's own limits, allowlist, scope
PRICES = "prices"  # in KV: one provider's per-model prices


def record(folder: str, name: str) -> str:
    """The path of record `name` in `folder` (e.g. `providers/openai`)."""
    return f"{folder}/{name}"


def project_namespace(org: str, project: str) -> str:
    return f"{org}/{project}"
