#!/bin/sh
# One-shot `init` service of docker-compose.yml (runs in the JetPero app image, as its user).
#
# 1. Waits for OpenBao to answer.
# 2. First run only: `bao operator init` (static seal: 1 recovery share); its output (root
#    token + recovery key) goes to $JETPERO_INIT_DIR/openbao-init.json, mode 0600, on the
#    `jetpero-secrets` volume that only this service mounts.
# 3. Waits until OpenBao is unsealed and active.
# 4. Runs the idempotent `flask --app wsgi bootstrap`, which writes the app's AppRole
#    credentials to $VAULT_APPROLE_FILE (the `jetpero-approle` volume, read-only in `app`).
#
# Every later `docker compose up` re-runs it: step 2 is skipped, bootstrap changes nothing
# that works. Set VAULT_TOKEN to bootstrap with another admin token (for example once the
# root token has been revoked and openbao-init.json moved offline).
set -eu
umask 077

BAO_ADDR=${BAO_ADDR:-${VAULT_ADDR:-http://openbao:8200}}
export BAO_ADDR
INIT_DIR=${JETPERO_INIT_DIR:-/var/lib/jetpero-init}
INIT_FILE=$INIT_DIR/openbao-init.json
APPROLE_FILE=${VAULT_APPROLE_FILE:-/run/jetpero/approle.json}
WAIT=${JETPERO_INIT_WAIT:-120}
unset BAO_NAMESPACE VAULT_NAMESPACE

log() { printf 'jetpero-init: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# HTTP status of GET /v1/sys/health: 200 active, 429 standby, 501 not initialised,
# 503 sealed, 000 no answer.
health() {
    python3 - "$BAO_ADDR" <<'PY'
import sys, urllib.error, urllib.request
try:
    with urllib.request.urlopen(sys.argv[1].rstrip("/") + "/v1/sys/health", timeout=3) as resp:
        print(resp.status)
except urllib.error.HTTPError as exc:
    print(exc.code)
except Exception:
    print("000")
PY
}

# wait_for "CODES": poll until the health status is one of CODES; print it.
wait_for() {
    deadline=$(( $(date +%s) + WAIT ))
    while :; do
        code=$(health)
        case " $1 " in *" $code "*) echo "$code"; return 0 ;; esac
        [ "$(date +%s)" -lt "$deadline" ] || { echo "$code"; return 1; }
        sleep 1
    done
}

mkdir -p "$INIT_DIR"
[ -w "$INIT_DIR" ] || die "$INIT_DIR is not writable"

log "waiting for OpenBao at $BAO_ADDR"
code=$(wait_for "200 429 501 503") || die "OpenBao did not answer within ${WAIT}s (last status $code)"

if [ "$code" = 501 ]; then
    [ ! -e "$INIT_FILE" ] || die "OpenBao is not initialised but $INIT_FILE exists: was the openbao-data volume replaced? Move that file away to initialise afresh."
    log "initialising OpenBao (static seal, 1 recovery share)"
    bao operator init -recovery-shares=1 -recovery-threshold=1 -format=json >"$INIT_FILE.tmp" \
        || die "bao operator init failed"
    chmod 0600 "$INIT_FILE.tmp"
    mv "$INIT_FILE.tmp" "$INIT_FILE"
    log "wrote $INIT_FILE (root token and recovery key): copy it somewhere safe"
fi

code=$(wait_for "200") || die "OpenBao is not unsealed and active after ${WAIT}s (status $code; 503 = sealed: is the unseal key the one this storage was initialised with?)"

if [ -z "${VAULT_TOKEN:-}" ]; then
    [ -r "$INIT_FILE" ] || die "OpenBao is initialised but $INIT_FILE is missing: set VAULT_TOKEN to an admin token for the bootstrap"
    VAULT_TOKEN=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["root_token"])' "$INIT_FILE")
fi
export VAULT_TOKEN
export VAULT_ADDR="$BAO_ADDR"
export VAULT_APPROLE_FILE="$APPROLE_FILE"

log "bootstrapping JetPero (policies, mounts, AppRole -> $APPROLE_FILE)"
exec flask --app wsgi bootstrap --approle-file "$APPROLE_FILE"
