"""Configuration: one Config class from the environment, checked against the README's table."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from config import Config, ConfigError

ROOT = Path(__file__).resolve().parents[1]
REQUIRED = {"VAULT_ADDR": "http://127.0.0.1:8200", "VAULT_APPROLE_FILE": "/nonexistent/approle.json"}


def readme_table() -> list[tuple[str, str | None, str]]:
    """(name, default or None if required, meaning) of each row of the README's Configuration table."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in section.splitlines():
        match = re.fullmatch(r"\| `([A-Z_]+)` \| (.+?) \| (.+?) \|", line.strip())
        if match:
            name, default, meaning = match.groups()
            if default == "*(required)*":
                rows.append((name, None, meaning))
            elif default == "*(empty)*":
                rows.append((name, "", meaning))
            else:
                rows.append((name, default.strip("`"), meaning))
    return rows


def test_readme_lists_exactly_the_variables_with_their_defaults():
    table = readme_table()
    assert [row[0] for row in table] == [var.name for var in Config.VARIABLES]
    assert [(row[0], row[1]) for row in table] == [(var.name, var.default) for var in Config.VARIABLES]
    assert [row[2] for row in table] == [var.help for var in Config.VARIABLES]


def test_defaults_apply_and_parse():
    config = Config.from_env(dict(REQUIRED))
    for var in Config.VARIABLES:
        if var.default is not None:
            assert getattr(config, var.name) == var.parse(var.default)
    assert config.VAULT_TIMEOUT == 5.0 and config.JETPERO_ALLOW_PRIVATE_UPSTREAMS is False
    assert config.JETPERO_WORKERS == 2 and config.JETPERO_MAX_TOKEN_TTL == 7776000


@pytest.mark.parametrize("missing", ["VAULT_ADDR", "VAULT_APPROLE_FILE"])
@pytest.mark.parametrize("how", ["absent", "empty"])
def test_missing_required_variable_is_named(missing, how):
    environ = dict(REQUIRED)
    if how == "absent":
        del environ[missing]
    else:
        environ[missing] = ""
    with pytest.raises(ConfigError, match=rf"^{missing} is required"):
        Config.from_env(environ)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("VAULT_TIMEOUT", "abc"),
        ("VAULT_TIMEOUT", "0"),
        ("VAULT_TIMEOUT", "-1"),
        ("VAULT_TIMEOUT", "nan"),
        ("VAULT_TIMEOUT", ""),
        ("JETPERO_SYNC_INTERVAL", "soon"),
        ("JETPERO_UPSTREAM_DEADLINE", "0"),
        ("JETPERO_MAX_TOKEN_TTL", "1.5"),
        ("JETPERO_MAX_TOKEN_TTL", "0"),
        ("JETPERO_ADMIN_TOKEN_TTL", "-5"),
        ("JETPERO_WORKERS", "two"),
        ("JETPERO_ALLOW_PRIVATE_UPSTREAMS", "maybe"),
    ],
)
def test_invalid_value_names_the_variable(name, value):
    with pytest.raises(ConfigError, match=rf"^{name}="):
        Config.from_env({**REQUIRED, name: value})


@pytest.mark.parametrize(
    ("value", "expected"), [("true", True), ("1", True), ("YES", True), ("off", False), ("0", False)]
)
def test_booleans(value, expected):
    config = Config.from_env({**REQUIRED, "JETPERO_ALLOW_PRIVATE_UPSTREAMS": value})
    assert config.JETPERO_ALLOW_PRIVATE_UPSTREAMS is expected


def test_wsgi_stops_with_a_message_naming_the_variable():
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("VAULT_", "JETPERO_"))}
    result = subprocess.run(
        [sys.executable, "-c", "import wsgi"], cwd=ROOT, env=environ, capture_output=True, text=True, timeout=60
    )
    assert result.returncode != 0
    assert "VAULT_ADDR is required" in result.stderr
    assert "Traceback" not in result.stderr
