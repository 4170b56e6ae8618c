"""The policy admin API: project policy, a token's policy, a provider's prices; roles, validation, audit.

Until the admin request cycle binds the audit trail itself (the audit wiring), these tests bind it
around each test; the test client runs the app in the test's own thread, so it sees the binding.
"""

from __future__ import annotations

import pytest
from sqlalchemy import select

from app.services import audit
from app.store.schema import audit_records
from tests.checks import assert_error
from tests.helpers import Project, issue_token


@pytest.fixture(autouse=True)
def trail(app):
    with audit.bound(app.extensions["jetpero.db"]):
        yield


@pytest.fixture
def proj(project) -> Project:
    return Project(*project.split("/"))


def member(api, org: str, role: str):
    response = api.post(f"/orgs/{org}/members", json={"name": f"{role}-person", "role": role})
    assert response.status_code == 201, response.json
    return api.as_(response.json["token"])


def actions(app, org: str) -> list[tuple[str, str, str]]:
    with app.extensions["jetpero.db"].connect() as conn:
        rows = conn.execute(
            select(audit_records.c.action, audit_records.c.target, audit_records.c.outcome)
            .where(audit_records.c.org == org)
            .order_by(audit_records.c.seq)
        )
        return [tuple(row) for row in rows]


def test_project_policy_round_trip_and_audit(app, api, proj):
    body = {
        "limits": {"requests_per_minute": 60, "tokens_per_day": 100000, "cost_per_month": "25.50"},
        "end_user_limits": {"requests_per_minute": 10},
        "ip_allowlist": ["203.0.113.0/24", "2001:db8::/32"],
        "estimate_tokens": 512,
    }
    assert api.get(f"{proj.path}/policy").json["limits"] == {}
    response = api.put(f"{proj.path}/policy", json=body)
    assert response.status_code == 200, response.json
    shown = api.get(f"{proj.path}/policy").json
    assert shown["limits"] == {"requests_per_minute": 60, "tokens_per_day": 100000, "cost_per_month": "25.50"}
    assert shown["end_user_limits"] == {"requests_per_minute": 10}
    assert shown["ip_allowlist"] == ["203.0.113.0/24", "2001:db8::/32"]
    assert shown["estimate_tokens"] == 512 and shown["updated_by"]
    assert ("policy.set", "project", "succeeded") in actions(app, proj.org)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"limits": {"requests_per_minute": 0}}, "requests_per_minute"),
        ({"limits": {"requests_per_minute": "ten"}}, "requests_per_minute"),
        ({"limits": {"per_hour": 3}}, "per_hour"),
        ({"limits": {"cost_per_day": "-1"}}, "cost_per_day"),
        ({"ip_allowlist": ["10.0.0.1/8"]}, "ip_allowlist"),
        ({"ip_allowlist": []}, "ip_allowlist"),
        ({"ip_allowlist": ["not-an-ip"]}, "ip_allowlist"),
        ({"estimate_tokens": 0}, "estimate_tokens"),
    ],
)
def test_project_policy_refuses_bad_values_naming_the_field(api, proj, body, field):
    response = api.put(f"{proj.path}/policy", json=body)
    assert response.status_code == 422, response.json
    assert field in response.get_data(as_text=True)
    if "host bits" in response.json["message"]:
        assert "did you mean 10.0.0.0/8" in response.json["message"]


def test_token_policy_roles_scope_and_never_looser(api, proj, provider):
    token = issue_token(api, proj)
    path = f"{proj.path}/tokens/{token['id']}/policy"
    assert api.put(f"{proj.path}/policy", json={"limits": {"requests_per_minute": 60}}).status_code == 200
    developer, viewer = member(api, proj.org, "developer"), member(api, proj.org, "viewer")
    body = {
        "limits": {"requests_per_minute": 600, "requests_per_second": 2},
        "routes": ["POST v1/chat/completions"],
        "models": ["gpt-4o-mini*"],
    }
    assert_error(viewer.put(path, json=body), 403)
    response = developer.put(path, json=body)
    assert response.status_code == 200, response.json
    assert response.json["limits"] == {"requests_per_minute": 600, "requests_per_second": 2}
    # 600/min is looser than the project's 60/min: the project's stands
    assert response.json["effective_limits"] == {"requests_per_minute": 60, "requests_per_second": 2}
    assert viewer.get(path).json["routes"] == ["POST v1/chat/completions"]
    assert_error(developer.put(f"{proj.path}/policy", json={}), 403)  # the project's is for admins
    bad = developer.put(path, json={"routes": ["FETCH v1/x"]})
    assert bad.status_code == 422 and bad.json["message"].startswith("routes")
    bad = developer.put(path, json={"models": ["gpt 4"]})
    assert bad.status_code == 422 and bad.json["message"].startswith("models")
    assert_error(api.get(f"{proj.path}/tokens/{'0' * 32}/policy"), 404)
    assert_error(api.get(f"{proj.path}/tokens/nope/policy"), 404)


def test_prices(app, api, proj, provider):
    path = f"{proj.path}/providers/{provider}/prices"
    developer = member(api, proj.org, "developer")
    body = {
        "models": {
            "gpt-4o": {"input_per_1k": "0.0025", "output_per_1k": "0.01"},
            "*": {"input_per_1k": "1", "output_per_1k": "2"},
        }
    }
    assert_error(developer.put(path, json=body), 403)
    response = api.put(path, json=body)
    assert response.status_code == 200, response.json
    assert api.get(path).json["models"]["gpt-4o"] == {"input_per_1k": "0.0025", "output_per_1k": "0.01"}
    assert ("prices.set", provider, "succeeded") in actions(app, proj.org)
    assert_error(api.put(path, json={"models": {"m": {"input_per_1k": "-1", "output_per_1k": "0"}}}), 422)
    assert_error(api.put(path, json={"models": {"bad model": {"input_per_1k": "1", "output_per_1k": "1"}}}), 422)
    assert_error(api.put(path, json={"models": {"m": {"input_per_1k": 1, "output_per_1k": "1"}}}), 422)  # a string
    assert_error(api.get(f"{proj.path}/providers/absent/prices"), 404)
