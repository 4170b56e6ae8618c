"""The domain services run without a request: they take an actor and plain data, check what the
actor may do, and leave nothing half-made. And the layers only call downwards."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from app.services import members, orgs, project_tokens, projects, signing
from app.services.actor import COMMAND_LINE, Actor
from app.services.errors import Invalid, NotAllowed
from app.vault.errors import NotFound
from tests.helpers import FAKE_KEY

APP = Path(__file__).resolve().parents[1] / "app"


@pytest.fixture
def vault(app, trail):  # services run without a request, on a trail bound as a job's would be
    return app.extensions["jetpero"].vault


def _developer(org: str) -> Actor:
    return Actor(kind="member", id="0" * 16, role="developer", org=org)


def test_a_member_added_without_a_request_gets_a_working_token(client, vault, config, org):
    added = members.add(vault, config, COMMAND_LINE, org, name="ci", role="viewer")
    assert added["created_by"] == "cli" and added["role"] == "viewer"
    response = client.get(f"/api/v1/orgs/{org}", headers={"Authorization": f"Bearer {added['token']}"})
    assert response.status_code == 200 and response.json["slug"] == org


def test_a_role_is_never_granted_above_the_actors_own(vault, config, org):
    admin = Actor(kind="member", id="1" * 16, role="admin", org=org)
    with pytest.raises(NotAllowed, match="above your own"):
        members.add(vault, config, admin, org, name="boss", role="owner")
    assert members.list_all(vault, COMMAND_LINE, org).items == []


def test_a_member_whose_token_cannot_be_signed_is_removed_again(vault, config, org, monkeypatch):
    def refuse(vault, claims):
        raise RuntimeError(f"signing failed with {FAKE_KEY}")

    monkeypatch.setattr(signing, "sign_admin", refuse)
    with pytest.raises(RuntimeError):
        members.add(vault, config, COMMAND_LINE, org, name="ci", role="viewer")
    assert members.list_all(vault, COMMAND_LINE, org).items == []


def test_an_actor_of_another_org_is_refused_whatever_they_ask(vault, config, org):
    stranger = Actor(kind="member", id="2" * 16, role="owner", org="elsewhere")
    for call in (
        lambda: orgs.show(vault, stranger, org),
        lambda: projects.list_all(vault, stranger, org),
        lambda: members.show(vault, stranger, org, "not-an-id"),
    ):
        with pytest.raises(NotAllowed):
            call()


def test_project_token_rules_hold_without_a_request(vault, config, project):
    org, slug = project.split("/")
    data = {"name": "ci", "environment": "staging", "expires_in": 3600}
    with pytest.raises(Invalid, match="maximum"):
        project_tokens.issue(vault, config, _developer(org), org, slug, {**data, "expires_in": 10**9})
    with pytest.raises(Invalid, match="does not have: nope"):
        project_tokens.issue(vault, config, _developer(org), org, slug, {**data, "scope": ["nope"]})
    issued = project_tokens.issue(vault, config, _developer(org), org, slug, data)
    assert issued["created_by"] == f"member:{org}:{'0' * 16}" and issued["scope"] == ["*"]
    assert project_tokens.get(vault, org, slug, issued["id"])["revoked_at"] is None
    with pytest.raises(NotFound):
        project_tokens.show(vault, _developer(org), org, slug, "../../" + "0" * 26)


def _imports(path: Path) -> set[str]:
    """Top-level package names and app-relative modules a file imports."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = "." * node.level + (node.module or "")
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


@pytest.mark.parametrize(
    ("package", "forbidden"),
    [
        ("services", ("flask", "hvac", "werkzeug", "..admin", "..proxy", "..access", "..state", "..errors")),
        ("rules", ("flask", "hvac", "werkzeug", "..services", "..vault", "..admin", "..proxy")),
        ("vault", ("flask", "..services", "..rules", "..admin", "..proxy", "..access", "..state")),
    ],
)
def test_layers_only_call_downwards(package, forbidden):
    for path in sorted((APP / package).glob("*.py")):
        bad = {name for name in _imports(path) if any(name == f or name.startswith(f"{f}.") for f in forbidden)}
        assert not bad, f"{path.name} imports {sorted(bad)}"
