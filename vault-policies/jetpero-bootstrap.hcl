# jetpero-bootstrap: what `flask bootstrap` needs to bring Vault to JetPero's layout again
# (upgrades: new policy texts, a missing mount or key, fresh app credentials), nothing more.
# Root namespace. deploy/init.sh writes it once with the root token and keeps an AppRole
# bound to it in the `jetpero-secrets` volume, so later runs need no root token.
#
# It cannot write its own policy, read secrets, mint tokens other than the app's AppRole
# credentials, or touch org and project namespaces. It can rewrite jetpero-app and
# jetpero-operator: keep its credentials as private as those of the app.

# JetPero's own mounts: list them, create the two if missing.
path "sys/mounts" {
  capabilities = ["read"]
}
path "sys/mounts/jetpero-kv" {
  capabilities = ["create", "read", "update"]
}
path "sys/mounts/jetpero-transit" {
  capabilities = ["create", "read", "update"]
}
# The registry mount's settings (no record): read until a new mount has finished upgrading itself.
path "jetpero-kv/config" {
  capabilities = ["read"]
}

# The admin-token signing key: read its public keys, create it if missing.
path "jetpero-transit/keys/admin" {
  capabilities = ["create", "read", "update"]
}

# The two policies the bootstrap writes from vault-policies/.
path "sys/policies/acl/jetpero-app" {
  capabilities = ["create", "read", "update"]
}
path "sys/policies/acl/jetpero-operator" {
  capabilities = ["create", "read", "update"]
}

# The AppRole auth method and the app's role: enable it if missing, keep the role's
# settings, read its role id, issue a secret id when the app's file no longer logs in.
path "sys/auth" {
  capabilities = ["read"]
}
path "sys/auth/approle" {
  capabilities = ["create", "read", "update", "sudo"]
}
path "auth/approle/role/jetpero" {
  capabilities = ["create", "read", "update"]
}
path "auth/approle/role/jetpero/role-id" {
  capabilities = ["read"]
}
path "auth/approle/role/jetpero/secret-id" {
  capabilities = ["create", "update"]
}
