#!/usr/bin/env bash
# `make operator-vault-token [TTL=8h]`: a Vault token for the OpenBao UI that may browse every
# org and project and decrypt nothing (vault-policies/jetpero-operator.hcl), minted with the
# local OpenBao's root token after `make run`. Usage: tools/operator-vault-token.sh [DATA_DIR] [TTL]
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${1:-.data}
TTL=${2:-8h}

die() { echo "operator-vault-token: $*" >&2; exit 1; }
[ -s "$DATA/root-token" ] && [ -s "$DATA/port" ] || die "no local OpenBao in $DATA: run \`make run\` first"
.venv/bin/python -m tools.openbao status --data-dir "$DATA" >/dev/null \
  || die "the local OpenBao in $DATA is not running: \`make run\` starts it"

VAULT_ADDR="http://127.0.0.1:$(cat "$DATA/port")" \
VAULT_APPROLE_FILE="$DATA/approle.json" \
VAULT_TOKEN="$(cat "$DATA/root-token")" \
  exec .venv/bin/flask --app wsgi operator-vault-token --ttl "$TTL"
