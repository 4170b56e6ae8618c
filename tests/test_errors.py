"""Errors a new user meets, each answered in the one JSON shape with a message that says what is
wrong and how to fix it: what was not found, what already exists, an org that still has
projects, a body that is not JSON, unknown routes, refused tokens, and Vault not answering."""

from __future__ import annotations

import json
import logging

import hvac.exceptions as hx
import pytest

from app.vault.connection import translate
from app.vault.errors import Unavailable
from tests.checks import assert_error
from tests.helpers import Project, bearer, issue_token, project_path, unique

pytestmark = pytest.mark.usefixtures("app")


# --------------------------------------------------------------------------- 409: what exists


def test_deleting_an_org_with_projects_names_them_and_cascade(api, org, project):
    body = assert_error(api.delete(f"/orgs/{org}"), 409)
    assert f"'{org}' still has 1 project" in body["message"]
    assert "?cascade=true" in body["message"]
    assert api.get(project_path(project)).status_code == 200  # nothing deleted
    assert api.delete(f"/orgs/{org}?cascade=true").status_code == 204


def test_a_duplicate_org_or_project_names_what_exists(api, org, project):
    body = assert_error(api.post("/orgs", json={"slug": org}), 409)
    assert body["message"] == f"The org '{org}' already exists; choose another name."
    slug = project.split("/")[1]
    body = assert_error(api.post(f"/orgs/{org}/projects", json={"slug": slug}), 409)
    assert body["message"] == f"The project '{project}' already exists; choose another name."


# --------------------------------------------------------------------------- 404: what is missing


def test_every_404_names_what_was_not_found(api, org, project, provider):
    path = project_path(project)
    cases = {
        "/orgs/no-such-org": "No org 'no-such-org' was found.",
        "/orgs/no-such-org/projects/web": "No org 'no-such-org' was found.",
        f"/orgs/{org}/projects/web": f"No project '{org}/web' was found.",
        f"/orgs/{org}/projects/web/providers/openai": f"No project '{org}/web' was found.",
        f"{path}/providers/mistral": f"No provider '{project}/mistral' was found.",
        f"{path}/tokens/{'0' * 32}": f"No token '{'0' * 32}' was found.",
        f"/orgs/{org}/members/{'0' * 16}": f"No member '{org}/{'0' * 16}' was found.",
        f"/orgs/{org}/members/not-an-id": "No member with that id was found.",
    }
    for target, message in cases.items():
        assert assert_error(api.get(target), 404)["message"] == message, target
    for target in (f"/orgs/{org}/projects/web", f"{path}/providers/mistral", f"{path}/tokens/{'0' * 32}"):
        assert "was found" in assert_error(api.delete(target), 404)["message"], target


def test_writes_and_keys_in_a_missing_project_name_the_project(api, org):
    missing = f"No project '{org}/web' was found."
    put = api.put(f"/orgs/{org}/projects/web/providers/x", json={"template": "openai", "api_key": "k" * 20})
    assert assert_error(put, 404)["message"] == missing
    assert assert_error(api.get(f"/orgs/{org}/projects/web/jwks.json"), 404)["message"] == missing
    issue = api.post(
        f"/orgs/{org}/projects/web/tokens", json={"name": "t", "environment": "development", "expires_in": 60}
    )
    assert assert_error(issue, 404)["message"] == missing
    assert assert_error(api.patch(f"/orgs/{org}/projects/web", json={"display_name": "x"}), 404)["message"] == missing
    assert assert_error(api.delete(f"/orgs/{org}/projects/web/tokens/{'0' * 32}"), 404)["message"] == missing


def test_a_404_never_echoes_a_token_put_where_an_id_goes(api, project, provider):
    value = issue_token(api, Project(*project.split("/")))["token"]
    response = api.get(f"{project_path(project)}/tokens/{value}")
    assert assert_error(response, 404)["message"] == "No token with that id was found."
    assert value not in response.get_data(as_text=True)


# --------------------------------------------------------------------------- 415: a body not sent as JSON


@pytest.mark.parametrize(
    "kwargs",
    [
        {"data": json.dumps({"slug": "acme"})},  # JSON without its Content-Type
        {"data": json.dumps({"slug": "acme"}), "content_type": "text/plain"},
        {"data": {"slug": "acme"}},  # a form
    ],
)
def test_a_body_not_sent_as_json_says_which_content_type_is_expected(api, kwargs):
    body = assert_error(api.post("/orgs", **kwargs), 415)
    assert "Content-Type: application/json" in body["message"]
    assert "Missing data" not in json.dumps(body)


def test_a_bodiless_call_is_not_asked_for_json(api, org):
    assert api.delete(f"/orgs/{org}").status_code == 204


# --------------------------------------------------------------------------- one 422 shape


def test_every_422_names_its_field(api, project, make_app):
    path = project_path(project)
    scheme = api.put(f"{path}/providers/x", json={"template": "custom", "api_key": "k" * 20, "base_url": "ftp://x.io"})
    assert "base_url" in assert_error(scheme, 422)["errors"]["json"]
    ttl = api.post(f"{path}/tokens", json={"name": "t", "environment": "development", "expires_in": 10**9})
    assert assert_error(ttl, 422)["errors"]["json"]["expires_in"][0].startswith("expires_in is above the maximum")
    scope = api.post(
        f"{path}/tokens", json={"name": "t", "environment": "development", "expires_in": 60, "scope": ["nope"]}
    )
    assert "scope" in assert_error(scope, 422)["errors"]["json"]
    schema = api.post("/orgs", json={"slug": "Bad_Slug"})
    assert "slug" in assert_error(schema, 422)["errors"]["json"]


def test_a_body_that_is_not_json_is_a_400_in_the_same_shape(api):
    response = api.post("/orgs", data="{not json", content_type="application/json")
    body = assert_error(response, 400)
    assert body["errors"] == {"json": {"_schema": ["Invalid JSON body."]}}


# --------------------------------------------------------------------------- every path answers JSON


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/nothing-here",
        "/api/v1/orgs/acme/projects/web/providers/My_LLM",  # not a valid name
        "/api/v1/orgs/ACME",
        "/api/v1/orgs/",
        "/proxy",
    ],
)
def test_unknown_routes_and_bad_names_answer_the_json_shape(api, path):
    body = assert_error(api.client.get(path, headers=bearer(api.token)), 404)
    assert "check the path" in body["message"]
    assert "lowercase" in body["message"]


def test_proxy_without_a_path_is_not_an_html_redirect(client, provider, project_token, upstream):
    assert_error(client.get("/proxy/openai"), 401)
    response = client.get("/proxy/openai", headers=bearer(project_token))
    assert response.status_code == 200  # the provider's base URL itself, as /proxy/openai/ is
    assert upstream.requests[-1].path == "/"


def test_a_method_not_allowed_is_json_and_says_which_are(api):
    response = api.client.put("/api/v1/orgs", headers=bearer(api.token), json={})
    assert_error(response, 405)
    assert set(response.headers["Allow"].replace(" ", "").split(",")) >= {"GET", "POST"}


# --------------------------------------------------------------------------- 401: uniform, but findable


def test_a_refused_token_is_uniform_in_the_body_and_logged_by_request_id(client, caplog, project_token):
    caplog.set_level(logging.INFO, logger="jetpero.errors")
    missing = client.get("/api/v1/orgs")
    garbage = client.get("/api/v1/orgs", headers=bearer("not-a-token"))
    wrong_audience = client.get("/api/v1/orgs", headers=bearer(project_token))  # a project token
    bodies = [assert_error(r, 401) for r in (missing, garbage, wrong_audience)]
    assert len({(b["code"], b["message"]) for b in bodies}) == 1  # no oracle
    assert missing.headers["WWW-Authenticate"] == 'Bearer realm="jetpero"'  # RFC 6750: no code without a token
    for response in (garbage, wrong_audience):
        assert response.headers["WWW-Authenticate"] == 'Bearer realm="jetpero", error="invalid_token"'
    reasons = {
        record.fields["request_id"]: record.getMessage()
        for record in caplog.records
        if record.name == "jetpero.errors" and record.getMessage().startswith("token refused")
    }
    for response in (missing, garbage, wrong_audience):
        assert response.headers["X-Request-Id"] in reasons
    assert reasons[missing.headers["X-Request-Id"]] == "token refused: missing"
    assert reasons[garbage.headers["X-Request-Id"]] != "token refused: missing"
    assert project_token not in caplog.text


def test_the_proxy_401_carries_the_challenge_too(client, provider):
    response = client.get("/proxy/openai/v1/models", headers=bearer("x.y.z"))
    assert_error(response, 401)
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="jetpero", error="invalid_token"'


# --------------------------------------------------------------------------- Vault not answering


@pytest.mark.parametrize("status", [401, 412, 501])
def test_vault_refusing_our_login_or_not_initialised_is_unavailable(status):
    """hvac's own exception for each status (`Unauthorized`, `PreconditionFailed`,
    `VaultNotInitialized`), as it raises them from a response: "Vault unavailable"."""
    raised = hx.VaultError.from_status(status, "from Vault", errors=["from Vault"], method="get", url="/v1/x")
    assert isinstance(translate(raised), Unavailable)


def test_vault_unavailable_is_503_with_retry_after(api, make_app, tmp_path):
    broken = tmp_path / "approle.json"
    broken.write_text("{}")  # the app's login cannot even be tried: as unavailable as a sealed Vault
    client = make_app(approle_file=str(broken)).test_client()
    body = assert_error(client.get("/api/v1/orgs", headers=bearer(api.token)), 503)
    assert body["message"] == "Vault is unavailable; retry later."


def test_the_org_named_in_a_path_that_is_missing_is_named_first(api):
    org = unique("org")
    assert assert_error(api.get(f"/orgs/{org}/members"), 404)["message"] == f"No org '{org}' was found."


def test_an_unknown_query_parameter_is_refused_by_name(api, org, project):
    body = assert_error(api.delete(f"/orgs/{org}?cascde=true"), 422)
    assert "cascde" in body["errors"]["query"]
    assert api.get(project_path(project)).status_code == 200  # nothing deleted
