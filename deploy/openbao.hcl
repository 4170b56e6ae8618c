# OpenBao server config for `docker compose up` (mounted read-only at /openbao/config/openbao.hcl).
# Paths are inside the openbao container; see docker-compose.yml for the volumes behind them.

ui = true

# How clients and the (single) raft peer reach this node inside the compose network.
api_addr     = "http://openbao:8200"
cluster_addr = "https://openbao:8201"

# Integrated storage. /openbao/file is the image's own data directory, owned by its openbao
# user, so the named volume `openbao-data` mounted there starts with the right owner.
storage "raft" {
  path    = "/openbao/file"
  node_id = "openbao-1"
}

# Plain HTTP inside the compose network only: docker-compose.yml publishes 8200 on the host's
# loopback. Terminate TLS in front of it (or set tls_cert_file/tls_key_file here) before
# exposing the UI or API any further.
listener "tcp" {
  address         = "0.0.0.0:8200"
  cluster_address = "0.0.0.0:8201"
  tls_disable     = true
}

# Auto-unseal with a static 32-byte key (openssl rand -out deploy/unseal.key 32). The
# container copies the operator's read-only key file here, on a tmpfs, readable by openbao only.
# Rotating (README "Backups and key rotation"): the new key becomes unseal.key with a new id,
# the old one previous.key with its old id, until one restart has rewrapped the root key:
#   current_key_id  = "jetpero-2"
#   previous_key_id = "jetpero-1"
#   previous_key    = "file:///openbao/unseal/previous.key"
seal "static" {
  current_key_id = "jetpero-1"
  current_key    = "file:///openbao/unseal/unseal.key"
}

# Declarative audit device (OpenBao 2.x refuses to enable audit devices through the API).
# Named volume `openbao-audit`; rotate it by renaming the file and sending SIGHUP to the server
# (README "Backups and key rotation").
audit "file" "file" {
  description = "JetPero audit log"
  options {
    file_path = "/openbao/logs/audit.log"
    mode      = "0600"
  }
}
