"""The API docs page works offline: Swagger UI comes from the app, under a self-only CSP.

The HTTP checks run everywhere; the browser ones drive chromium (see tests/browser_fixtures.py).
"""

from __future__ import annotations

import re

from app import docs
from tests.browser_fixtures import csp_violations

DOCS = "/api/v1/docs"


def _directives(response) -> dict[str, str]:
    policy = response.headers["Content-Security-Policy"]
    return {name: value for name, _, value in (part.strip().partition(" ") for part in policy.split(";"))}


def test_docs_page_loads_nothing_from_another_site(client):
    response = client.get(DOCS)
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert "cdn." not in html and "//" not in re.sub(r"<!DOCTYPE[^>]*>", "", html)  # no absolute URL at all
    assert "<script>" not in html and "onload" not in html  # no inline script: the CSP allows none
    assets = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert f"{docs.ASSETS_URL}swagger-ui-bundle.js" in assets and f"{docs.ASSETS_URL}swagger-ui.css" in assets
    for asset in assets:
        served = client.get(asset)
        assert served.status_code == 200, asset
        assert served.headers["X-Content-Type-Options"] == "nosniff"
    assert client.get(f"{docs.ASSETS_URL}swagger-ui-bundle.js").mimetype == "text/javascript"


def test_docs_page_csp_allows_the_app_itself_only(client):
    directives = _directives(client.get(DOCS))
    assert directives["default-src"] == "'none'"
    for name in ("script-src", "style-src", "connect-src"):
        assert directives[name] == "'self'", name
    assert directives["img-src"] == "'self' data:"
    assert directives["frame-ancestors"] == "'none'" and directives["base-uri"] == "'none'"
    assert "unsafe" not in client.get(DOCS).headers["Content-Security-Policy"]


def test_assets_outside_the_bundle_are_not_served(client):
    assert client.get(f"{docs.ASSETS_URL}../__init__.py").status_code == 404
    assert client.get(f"{docs.ASSETS_URL}nothing-here.js").status_code == 404


def test_the_api_itself_gets_no_docs_policy(api):
    assert "Content-Security-Policy" not in api.get("/orgs").headers


def test_docs_page_renders_and_executes_a_call_in_chromium(page, browser_live, operator_token):
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    page.goto(browser_live.url + DOCS)

    get_orgs = page.locator(".opblock-get").filter(
        has=page.locator(".opblock-summary-path", has_text=re.compile(r"^/api/v1/orgs$"))
    )
    get_orgs.wait_for()
    paths = set(page.locator(".opblock-summary-path").all_inner_texts())
    assert {"/api/v1/orgs", "/api/v1/orgs/{org}/projects", "/api/v1/orgs/{org}/projects/{project}/tokens"} <= paths

    page.get_by_role("button", name="Authorize").first.click()
    page.locator("#auth-bearer-value").fill(operator_token)
    page.get_by_role("button", name="Apply credentials").click()
    page.get_by_role("button", name="Close").click()

    get_orgs.locator(".opblock-summary").click()
    get_orgs.get_by_role("button", name="Try it out").click()
    get_orgs.get_by_role("button", name="Execute").click()
    status = get_orgs.locator(".live-responses-table tbody .response-col_status")
    status.wait_for()
    assert status.inner_text().strip() == "200"

    call = [seen for seen in browser_live.seen if seen.path == "/api/v1/orgs"]
    assert [seen.method for seen in call] == ["GET"]
    assert all(url.startswith(browser_live.url + "/") for url in requested), requested  # nothing from the internet
    assert csp_violations(page) == []
