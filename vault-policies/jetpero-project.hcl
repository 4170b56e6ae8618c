# jetpero-project: what JetPero may do inside ONE project namespace (<org>/<project>).
# Paths are relative to that namespace, so a token holding this policy there is refused
# everywhere else: in sibling projects, in the org, and on sys/.

# Provider records (ciphertext + settings) and project-token records. DELETE on data/ is KV's
# soft delete of the latest version (a deleted provider keeps its history); DELETE on metadata/
# is the purge that destroys every version.
path "kv/data/*" {
  capabilities = ["create", "read", "update", "delete"]
}
path "kv/metadata/*" {
  capabilities = ["read", "delete", "list"]
}

# Provider keys: encrypt and decrypt, bound to the provider name as context.
path "transit/encrypt/provider-keys" {
  capabilities = ["update"]
}
path "transit/decrypt/provider-keys" {
  capabilities = ["update"]
}
# Rotation: rewrap a ciphertext to the newest key version (the plaintext never leaves Vault).
path "transit/rewrap/provider-keys" {
  capabilities = ["update"]
}

# Project tokens: sign with the project's Ed25519 key; read its public keys.
path "transit/sign/token-signing/*" {
  capabilities = ["update"]
}
path "transit/sign/token-signing" {
  capabilities = ["update"]
}
path "transit/keys/token-signing" {
  capabilities = ["read"]
}
