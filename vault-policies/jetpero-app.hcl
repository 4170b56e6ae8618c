# jetpero-app: the JetPero service's own (provisioner) identity, in the root namespace.
# It manages lifecycle only: org and project namespaces, their mounts, keys and policies,
# org-level records, and the minting of project-scoped tokens. It never reads a provider
# key: everything inside a project runs under that project's `jetpero-project` policy.

# JetPero's own records (change feed, org registry, operators) and admin-token signing key.
path "jetpero-kv/*" {
  capabilities = ["create", "read", "update", "delete", "list"]
}
path "jetpero-transit/sign/admin" {
  capabilities = ["update"]
}
path "jetpero-transit/keys/admin" {
  capabilities = ["read"]
}
# Rotating the admin key, and retiring old versions (min_decryption_version).
path "jetpero-transit/keys/admin/rotate" {
  capabilities = ["update"]
}
path "jetpero-transit/keys/admin/config" {
  capabilities = ["update"]
}

# Org namespaces (children of the root namespace).
path "sys/namespaces/*" {
  capabilities = ["create", "read", "update", "delete", "list"]
}
path "sys/namespaces" {
  capabilities = ["list"]
}

# Inside an org: project namespaces, the org's own KV mount and its records.
path "+/sys/namespaces/*" {
  capabilities = ["create", "read", "update", "delete", "list"]
}
path "+/sys/namespaces" {
  capabilities = ["list"]
}
path "+/sys/mounts/jetpero" {
  capabilities = ["create", "read", "update"]
}
path "+/jetpero/*" {
  capabilities = ["create", "read", "update", "delete", "list"]
}

# Inside a project: its two mounts, its two keys, its policy and token role.
path "+/+/sys/mounts/transit" {
  capabilities = ["create", "read", "update"]
}
path "+/+/sys/mounts/kv" {
  capabilities = ["create", "read", "update"]
}
# The KV mount's settings (no record): read until a new mount has finished upgrading itself.
path "+/+/kv/config" {
  capabilities = ["read"]
}
path "+/+/transit/keys/provider-keys" {
  capabilities = ["create", "read", "update"]
}
path "+/+/transit/keys/token-signing" {
  capabilities = ["create", "read", "update"]
}
# Key rotation: a new version, and each key's config (auto_rotate_period, min_decryption_version).
path "+/+/transit/keys/provider-keys/rotate" {
  capabilities = ["update"]
}
path "+/+/transit/keys/provider-keys/config" {
  capabilities = ["update"]
}
path "+/+/transit/keys/token-signing/rotate" {
  capabilities = ["update"]
}
path "+/+/transit/keys/token-signing/config" {
  capabilities = ["update"]
}
# The project KV's settings: how many versions of each record it keeps.
path "+/+/kv/config" {
  capabilities = ["update"]
}
path "+/+/sys/policies/acl/jetpero-project" {
  capabilities = ["create", "read", "update"]
}
path "+/+/auth/token/roles/jetpero-project" {
  capabilities = ["create", "read", "update"]
}
# Minting a token in a child namespace needs sudo; the role caps it to jetpero-project.
path "+/+/auth/token/create/jetpero-project" {
  capabilities = ["create", "update", "sudo"]
}

# Its own token.
path "auth/token/lookup-self" {
  capabilities = ["read"]
}
