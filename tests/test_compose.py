"""docker-compose.yml is consistent with config.py and the deployment the README promises.

There is no Docker engine here: CI validates the file with `docker-compose config`
(.ci/run) and these tests check what it must contain; the stack itself is not run.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from config import Config

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_services_and_volumes(compose):
    services = compose["services"]
    assert set(services) == {"openbao", "postgres", "redis", "init", "app", "tls"}
    assert services["tls"]["profiles"] == ["tls"]  # the HTTPS front is opt-in
    assert services["openbao"]["image"] == "openbao/openbao:2.7.2"  # pinned
    assert set(compose["volumes"]) >= {"openbao-data", "openbao-audit", "jetpero-approle", "jetpero-secrets"}
    openbao_volumes = " ".join(v if isinstance(v, str) else v["source"] for v in services["openbao"]["volumes"])
    assert "openbao-data:" in openbao_volumes and "openbao-audit:" in openbao_volumes
    assert services["postgres"]["image"] == "postgres:16.4-alpine"  # pinned
    assert "postgres-data:/var/lib/postgresql/data" in services["postgres"]["volumes"]
    assert "postgres-data" in compose["volumes"]
    assert "ports" not in services["postgres"]  # only the app and init reach it
    assert services["redis"]["image"] == "redis:7.4.1-alpine"  # pinned
    assert "redis-data:/data" in services["redis"]["volumes"] and "redis-data" in compose["volumes"]
    assert "ports" not in services["redis"]
    assert services["app"]["depends_on"]["redis"]["condition"] == "service_healthy"
    for name in ("init", "app"):
        assert services[name]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert services["init"]["restart"] == "no"
    assert services["app"]["depends_on"]["init"]["condition"] == "service_completed_successfully"
    assert "gunicorn.conf.py" in services["app"]["command"]
    assert "/readyz" in " ".join(services["app"]["healthcheck"]["test"])


def test_app_environment_matches_config(compose):
    env = compose["services"]["app"]["environment"]
    assert set(env) == {variable.name for variable in Config.VARIABLES}
    for variable in Config.VARIABLES:
        value = str(env[variable.name])
        default = re.fullmatch(r"\$\{(\w+):-(.*)\}", value)
        if default:  # overridable: same name, same default as config.py
            assert default.group(1) == variable.name
            assert default.group(2) == (variable.default or "")
        else:
            assert value, f"{variable.name} must have a value"
    assert env["VAULT_ADDR"] == "http://openbao:8200"
    assert env["JETPERO_DATABASE_URL"].startswith("postgresql+psycopg://jetpero:")
    assert env["JETPERO_DATABASE_URL"].endswith("@postgres:5432/jetpero")
    assert env["JETPERO_REDIS_URL"] == "redis://redis:6379/0"  # the limits exact across nodes
    assert env["JETPERO_BIND"].startswith("0.0.0.0:")
    approle_mounts = [v for v in compose["services"]["app"]["volumes"] if v.startswith("jetpero-approle:")]
    assert approle_mounts == [f"jetpero-approle:{Path(env['VAULT_APPROLE_FILE']).parent}:ro"]
    assert not any(v.startswith("jetpero-secrets") for v in compose["services"]["app"]["volumes"])


def test_openbao_server_config():
    hcl = (ROOT / "deploy" / "openbao.hcl").read_text()
    for needle in ('storage "raft"', 'seal "static"', 'audit "file"', "ui = true"):
        assert needle in hcl


def test_init_runs_the_bootstrap():
    script = (ROOT / "deploy" / "init.sh").read_text()
    assert "operator init" in script and "flask --app wsgi bootstrap" in script


def test_tls_front_proxies_to_the_app_and_is_the_one_trusted_hop(compose):
    tls = compose["services"]["tls"]
    assert re.fullmatch(r"caddy:\d+\.\d+\.\d+-alpine", tls["image"])  # pinned
    assert "./deploy/Caddyfile:/etc/caddy/Caddyfile:ro" in tls["volumes"]
    assert "${JETPERO_TLS_DIR:-./deploy/tls}:/etc/caddy/tls:ro" in tls["volumes"]
    assert tls["ports"] == ["${JETPERO_HTTPS_PORT:-443}:443"]
    caddyfile = (ROOT / "deploy" / "Caddyfile").read_text()
    assert "reverse_proxy app:8000" in caddyfile and "tls /etc/caddy/tls/cert.pem /etc/caddy/tls/key.pem" in caddyfile
    directives = [line.strip() for line in caddyfile.splitlines() if not line.strip().startswith("#")]
    assert not any(line.startswith("trusted_proxies") for line in directives)  # a client's own XFF is dropped
    assert "flush_interval -1" in caddyfile
    app = compose["services"]["app"]
    assert app["environment"]["JETPERO_TRUSTED_PROXIES"] == "${JETPERO_TRUSTED_PROXIES:-0}"
    assert app["ports"] == ["${JETPERO_PUBLISH_ADDR:-0.0.0.0}:${JETPERO_PORT:-8000}:8000"]
    assert "deploy/tls" in (ROOT / ".dockerignore").read_text().split()  # the key stays out of the image


def test_init_bootstraps_under_the_bootstrap_policy(compose):
    init_sh = (ROOT / "deploy" / "init.sh").read_text()
    assert "vault-policies/jetpero-bootstrap.hcl" in init_sh
    assert "token_policies=jetpero-bootstrap" in init_sh and "token_no_default_policy=true" in init_sh
    volumes = compose["services"]["init"]["volumes"]
    assert "jetpero-secrets:/var/lib/jetpero-init" in volumes  # where bootstrap-approle.json is kept
