"""Organisations: slugs, create/list/get/delete, conflicts, cascade, and the namespace in Vault."""

from __future__ import annotations

import pytest

from tests.checks import assert_error, namespaces
from tests.helpers import every, unique


def test_create_list_get_delete(api, bao):
    slug = unique("org")
    r = api.post("/orgs", json={"slug": slug, "display_name": "Acme"})
    assert r.status_code == 201, r.json
    assert r.json["slug"] == slug and r.json["display_name"] == "Acme" and r.json["created_at"]
    assert slug in namespaces(bao)
    assert "jetpero/" in bao.root(slug).sys.list_mounted_secrets_engines()["data"]

    assert slug in [o["slug"] for o in every(api, "/orgs")]
    r = api.get(f"/orgs/{slug}")
    assert r.status_code == 200 and r.json["display_name"] == "Acme"

    assert api.delete(f"/orgs/{slug}").status_code == 204
    assert slug not in namespaces(bao)
    assert_error(api.get(f"/orgs/{slug}"), 404)
    assert slug not in [o["slug"] for o in api.get("/orgs").json]
    assert_error(api.delete(f"/orgs/{slug}"), 404)
    # The name is free again.
    assert api.post("/orgs", json={"slug": slug}).status_code == 201
    assert api.get(f"/orgs/{slug}").json["display_name"] == slug


def test_duplicate_org_is_409(api, org):
    assert_error(api.post("/orgs", json={"slug": org}), 409)
    assert api.get(f"/orgs/{org}").json["display_name"] == "Test org"


def test_existing_namespace_is_409_and_left_alone(api, bao):
    """A namespace JetPero did not create is never claimed, nor deleted by the rollback."""
    slug = unique("foreign")
    bao.root().adapter.post(f"/v1/sys/namespaces/{slug}")
    bao.root(slug).sys.enable_secrets_engine("kv", path="theirs", options={"version": "2"})
    assert_error(api.post("/orgs", json={"slug": slug}), 409)
    assert slug in namespaces(bao)
    assert "theirs/" in bao.root(slug).sys.list_mounted_secrets_engines()["data"]
    assert_error(api.get(f"/orgs/{slug}"), 404)


@pytest.mark.parametrize("slug", ["abc.co", "tt.net", "a", "0rg", "my-org.example", "x" * 63])
def test_valid_slugs(slug):
    from app.rules.slugs import slug_error

    assert slug_error(slug) is None


@pytest.mark.parametrize(
    "slug",
    [
        "Abc",
        "ABC.CO",
        "a/b",
        "a..b",
        "..",
        ".abc",
        "abc.",
        "-abc",
        "abc-",
        "a b",
        "a_b",
        "é",
        "",
        "x" * 64,
        "sys",
        "auth",
        "root",
        "identity",
        "cubbyhole",
        "default",
        "jetpero",
        "jetpero-app",
        "jetpero.io",
        "a\nb",
        7,
        None,
    ],
)
def test_invalid_org_slug_is_422_naming_slug(api, bao, slug):
    assert_error(api.post("/orgs", json={"slug": slug}), 422, "slug")
    if isinstance(slug, str) and slug and "/" not in slug and "\n" not in slug:
        assert slug not in namespaces(bao)


def test_missing_slug_and_bad_display_name_are_422(api):
    assert_error(api.post("/orgs", json={}), 422, "slug")
    assert_error(api.post("/orgs", json={"slug": unique("org"), "display_name": "x" * 101}), 422, "display_name")
    assert_error(api.post("/orgs", json={"slug": unique("org"), "extra": 1}), 422, "extra")
    assert_error(api.post("/orgs", data="not json", headers={"Content-Type": "application/json"}), 400)


def test_delete_with_projects_needs_cascade(api, bao, org):
    for slug in ("abc.co", "tt.net"):
        assert api.post(f"/orgs/{org}/projects", json={"slug": slug}).status_code == 201
    assert namespaces(bao, org) == {"abc.co", "tt.net"}

    assert_error(api.delete(f"/orgs/{org}"), 409)
    assert_error(api.delete(f"/orgs/{org}?cascade=false"), 409)
    assert_error(api.delete(f"/orgs/{org}?cascade=maybe"), 422, "cascade")
    assert api.get(f"/orgs/{org}/projects/abc.co").status_code == 200
    assert namespaces(bao, org) == {"abc.co", "tt.net"}

    assert api.delete(f"/orgs/{org}?cascade=true").status_code == 204
    assert org not in namespaces(bao)
    assert_error(api.get(f"/orgs/{org}"), 404)
    assert_error(api.get(f"/orgs/{org}/projects/abc.co"), 404)


def test_unknown_org_is_404_everywhere(api):
    missing = unique("missing")
    for path in ("", "/projects", "/members", "/projects/abc.co", "/projects/abc.co/providers"):
        assert_error(api.get(f"/orgs/{missing}{path}"), 404)
    assert_error(api.post(f"/orgs/{missing}/projects", json={"slug": "abc.co"}), 404)
    assert_error(api.post(f"/orgs/{missing}/members", json={"name": "x", "role": "viewer"}), 404)
    # A path segment that is not a slug never reaches Vault.
    assert_error(api.get("/orgs/Not-A-Slug"), 404)
    assert_error(api.get("/orgs/sys"), 404)
    assert_error(api.get("/no-such-route"), 404)  # flask-smorest's own errors share the shape


def test_wrong_method_is_405_with_allow(api, org):
    r = api.put(f"/orgs/{org}", json={})
    assert_error(r, 405)
    assert set(r.headers["Allow"].replace(" ", "").split(",")) >= {"GET", "DELETE"}


def test_authentication_is_required(client, org):
    for headers in ({}, {"Authorization": "Bearer"}, {"Authorization": "Basic abc"}, {"Authorization": "Bearer x.y.z"}):
        r = client.get(f"/api/v1/orgs/{org}", headers=headers)
        assert_error(r, 401)
        assert r.headers["WWW-Authenticate"].startswith("Bearer")
    r = client.post("/api/v1/orgs", json={"slug": "Bad Slug"})
    assert_error(r, 401)  # authentication comes before validation: nothing is read first
