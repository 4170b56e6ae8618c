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
    assert set(services) == {"openbao", "init", "app"}
    assert services["openbao"]["image"] == "openbao/openbao:2.7.2"  # pinned
    assert set(compose["volumes"]) >= {"openbao-data", "openbao-audit", "jetpero-approle", "jetpero-secrets"}
    openbao_volumes = " ".join(v if isinstance(v, str) else v["source"] for v in services["openbao"]["volumes"])
    assert "openbao-data:" in openbao_volumes and "openbao-audit:" in openbao_volumes
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
