# jetpero-operator: a human operator browsing OpenBao/Vault through its web UI.
# Written in the ROOT namespace; a root-namespace path reaches child namespaces by prefix:
# "<path>" = root, "+/<path>" = every org (<org>), "+/+/<path>" = every project (<org>/<project>).
#
# It may see the layout (namespaces, mounts, policies, audit devices) and metadata
# (KV versions and dates, transit key types and versions), never a secret: no KV data,
# no transit encrypt/decrypt/sign/export/backup. Those are also denied explicitly, so
# adding another policy to an operator's token cannot bring them back by accident.
#
# Slugs never start with "jetpero" (app/rules/slugs.py), so no org namespace is called like the
# root mounts jetpero-kv / jetpero-transit, and the "+/+/..." paths below only reach
# those mounts through the explicit denies at the end.

# --- Its own token and the UI's permission probes (also in `default`; here so the policy
# --- works on a token created with no_default_policy).
path "auth/token/lookup-self" {
  capabilities = ["read"]
}
path "sys/capabilities-self" {
  capabilities = ["update"]
}
path "+/sys/capabilities-self" {
  capabilities = ["update"]
}
path "+/+/sys/capabilities-self" {
  capabilities = ["update"]
}
path "sys/internal/ui/resultant-acl" {
  capabilities = ["read"]
}
path "+/sys/internal/ui/resultant-acl" {
  capabilities = ["read"]
}
path "+/+/sys/internal/ui/resultant-acl" {
  capabilities = ["read"]
}

# --- Namespaces: list (and read the metadata of) the children of every namespace.
# A LIST request's path ends in "/", so "sys/namespaces/*" covers LIST sys/namespaces.
path "sys/namespaces/*" {
  capabilities = ["read", "list"]
}
path "+/sys/namespaces/*" {
  capabilities = ["read", "list"]
}
path "+/+/sys/namespaces/*" {
  capabilities = ["read", "list"]
}

# --- Mounts. The UI's own GET sys/internal/ui/mounts[/<mount>] needs no grant: it is an
# unauthenticated endpoint that shows only the mounts this token can reach (the ones below).
path "sys/mounts" {
  capabilities = ["read"]
}
path "+/sys/mounts" {
  capabilities = ["read"]
}
path "+/+/sys/mounts" {
  capabilities = ["read"]
}

# --- ACL policies, everywhere (read only).
path "sys/policies/acl/*" {
  capabilities = ["read", "list"]
}
path "+/sys/policies/acl/*" {
  capabilities = ["read", "list"]
}
path "+/+/sys/policies/acl/*" {
  capabilities = ["read", "list"]
}

# --- Audit devices (root namespace): listing them is a sudo-protected read.
# No create/update: nothing here can add, change or remove a device.
path "sys/audit" {
  capabilities = ["read", "sudo"]
}

# --- KV v2 metadata only: root registry, each org's records, each project's records.
# The UI reads <mount>/config (max versions, cas_required) when it opens a KV v2 engine.
path "jetpero-kv/metadata/*" {
  capabilities = ["read", "list"]
}
path "jetpero-kv/config" {
  capabilities = ["read"]
}
path "+/jetpero/metadata/*" {
  capabilities = ["read", "list"]
}
path "+/jetpero/config" {
  capabilities = ["read"]
}
path "+/+/kv/metadata/*" {
  capabilities = ["read", "list"]
}
path "+/+/kv/config" {
  capabilities = ["read"]
}

# --- Transit key metadata only (type, versions, public keys of signing keys).
path "jetpero-transit/keys/*" {
  capabilities = ["read", "list"]
}
path "+/+/transit/keys/*" {
  capabilities = ["read", "list"]
}

# --- Never: secret values and key material, whatever else the token holds.
path "jetpero-kv/data/*" {
  capabilities = ["deny"]
}
path "jetpero-kv/subkeys/*" {
  capabilities = ["deny"]
}
path "+/jetpero/data/*" {
  capabilities = ["deny"]
}
path "+/jetpero/subkeys/*" {
  capabilities = ["deny"]
}
path "+/+/kv/data/*" {
  capabilities = ["deny"]
}
path "+/+/kv/subkeys/*" {
  capabilities = ["deny"]
}
path "jetpero-transit/encrypt/*" {
  capabilities = ["deny"]
}
path "jetpero-transit/decrypt/*" {
  capabilities = ["deny"]
}
path "jetpero-transit/rewrap/*" {
  capabilities = ["deny"]
}
path "jetpero-transit/datakey/*" {
  capabilities = ["deny"]
}
path "jetpero-transit/sign/*" {
  capabilities = ["deny"]
}
path "jetpero-transit/hmac/*" {
  capabilities = ["deny"]
}
path "jetpero-transit/export/*" {
  capabilities = ["deny"]
}
path "jetpero-transit/backup/*" {
  capabilities = ["deny"]
}
path "+/+/transit/encrypt/*" {
  capabilities = ["deny"]
}
path "+/+/transit/decrypt/*" {
  capabilities = ["deny"]
}
path "+/+/transit/rewrap/*" {
  capabilities = ["deny"]
}
path "+/+/transit/datakey/*" {
  capabilities = ["deny"]
}
path "+/+/transit/sign/*" {
  capabilities = ["deny"]
}
path "+/+/transit/hmac/*" {
  capabilities = ["deny"]
}
path "+/+/transit/export/*" {
  capabilities = ["deny"]
}
path "+/+/transit/backup/*" {
  capabilities = ["deny"]
}
