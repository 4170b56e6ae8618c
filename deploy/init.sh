#!/bin/sh
# One-shot `init` service of docker-compose.yml (runs in the JetPero app image, as its user).
#
# 1. Waits for OpenBao to answer.
# 2. First run only: `bao operator init` (static seal: 1 recovery share); its output (root
#    token + recovery key) goes to $JETPERO_INIT_DIR/openbao-init.json, mode 0600, on the
#    `jetpero-secrets` volume that only this service mounts.
# 3. Waits until OpenBao is unsealed and active.
# 4. Once (no $JETPERO_INIT_DIR/bootstrap-approle.json yet), with the root token (or
#    VAULT_TOKEN): writes vault-policies/jetpero-bootstrap.hcl and an AppRole
#    `jetpero-bootstrap` bound to it alone, whose credentials go to bootstrap-approle.json (0600).
# 5. Logs in with those credentials (a 15-minute token) and runs the idempotent
#    `flask --app wsgi bootstrap`, which writes the app's AppRole credentials to
#    $VAULT_APPROLE_FILE (the `jetpero-approle` volume, read-only in `app`).
#
# Every later `docker compose up` re-runs steps 1, 3 and 5 only: the root token is no longer
# needed, so openbao-init.json can be moved offline (README "Deploying with docker compose").
set -eu
umask 077

BAO_ADDR=${BAO_ADDR:-${VAULT_ADDR:-http://openbao:8200}}
export BAO_ADDR
INIT_DIR=${JETPERO_INIT_DIR:-/var/lib/jetpero-init}
INIT_FILE=$INIT_DIR/openbao-init.json
BOOT_FILE=$INIT_DIR/bootstrap-approle.json
POLICY_FILE=${JETPERO_BOOTSTRAP_POLICY:-$(dirname "$0")/../vault-policies/jetpero-bootstrap.hcl}
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

# field FILE KEY: one string field of a JSON file.
field() { python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$1" "$2"; }

# login: a token from the bootstrap AppRole on stdout; fails if the credentials no longer work.
login() {
    [ -r "$BOOT_FILE" ] || return 1
    env -u BAO_TOKEN -u VAULT_TOKEN bao write -field=token auth/approle/login \
        role_id="$(field "$BOOT_FILE" role_id)" secret_id="$(field "$BOOT_FILE" secret_id)" 2>/dev/null
}

if ! token=$(login); then
    if [ -z "${VAULT_TOKEN:-}" ]; then
        [ -r "$INIT_FILE" ] || die "no working $BOOT_FILE and no $INIT_FILE: set VAULT_TOKEN to a root or admin token once to create the bootstrap AppRole"
        VAULT_TOKEN=$(field "$INIT_FILE" root_token)
    fi
    log "creating the jetpero-bootstrap policy and AppRole (credentials -> $BOOT_FILE)"
    (
        export BAO_TOKEN="$VAULT_TOKEN"
        bao policy write jetpero-bootstrap "$POLICY_FILE" >/dev/null
        bao auth list -format=json | grep -q '"approle/"' || bao auth enable approle >/dev/null
        bao write auth/approle/role/jetpero-bootstrap token_policies=jetpero-bootstrap \
            token_no_default_policy=true token_ttl=15m token_max_ttl=15m token_type=service \
            secret_id_ttl=0 secret_id_num_uses=0 >/dev/null
        role_id=$(bao read -field=role_id auth/approle/role/jetpero-bootstrap/role-id)
        secret_id=$(bao write -f -field=secret_id auth/approle/role/jetpero-bootstrap/secret-id)
        printf '{"role_id": "%s", "secret_id": "%s"}\n' "$role_id" "$secret_id" >"$BOOT_FILE.tmp"
        chmod 0600 "$BOOT_FILE.tmp"
        mv "$BOOT_FILE.tmp" "$BOOT_FILE"
    ) || die "could not create the bootstrap AppRole (is VAULT_TOKEN a root token?)"
    token=$(login) || die "the new bootstrap AppRole does not log in"
fi
unset VAULT_TOKEN BAO_TOKEN
export VAULT_TOKEN="$token"
export VAULT_ADDR="$BAO_ADDR"
export VAULT_APPROLE_FILE="$APPROLE_FILE"

log "bootstrapping JetPero under jetpero-bootstrap (policies, mounts, AppRole -> $APPROLE_FILE)"
exec flask --app wsgi bootstrap --approle-file "$APPROLE_FILE"
