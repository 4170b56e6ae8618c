#!/usr/bin/env bash
# `make run`: a local persistent OpenBao under .data/ (unless VAULT_ADDR is set), the
# idempotent bootstrap, an operator token, then gunicorn with gevent workers.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
DATA=.data
mkdir -p "$DATA" && chmod 700 "$DATA"

if [ -z "${VAULT_ADDR:-}" ]; then
  token_file=$($BIN/python -m tools.openbao run-persistent --data-dir "$DATA" --port "${BAO_PORT:-8200}")
  export VAULT_ADDR="http://127.0.0.1:${BAO_PORT:-8200}"
  export VAULT_TOKEN
  VAULT_TOKEN=$(cat "$token_file")
fi
export VAULT_APPROLE_FILE="${VAULT_APPROLE_FILE:-$DATA/approle.json}"

if [ -n "${VAULT_TOKEN:-}" ]; then
  $BIN/flask --app wsgi bootstrap
else
  echo "VAULT_TOKEN not set: skipping bootstrap (VAULT_APPROLE_FILE must already work)" >&2
fi
unset VAULT_TOKEN  # the app runs as its own AppRole, never with the admin token

# Kept across runs, re-minted once it has less than a day left (or is unreadable).
$BIN/python -m tools.operator_token ensure "$DATA/operator-token" --name make-run

bind="${JETPERO_BIND:-127.0.0.1:8000}"
cat <<MSG

  JetPero admin API  http://$bind/api/v1
  API docs           http://$bind/api/v1/docs
  Vault UI           $VAULT_ADDR/ui
  Operator token     $(cat "$DATA/operator-token")
                     (kept in $DATA/operator-token; use it as: Authorization: Bearer <token>)

MSG
exec $BIN/gunicorn -c gunicorn.conf.py wsgi:app
