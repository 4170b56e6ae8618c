"""The OpenAPI document describes the errors the API answers with, and the rules it applies to
names, origins and keys, so a generated client refuses what the server refuses."""

from __future__ import annotations

import re

import pytest

from app.rules.slugs import RESERVED, is_slug

METHODS = {"get", "put", "post", "delete", "patch"}


@pytest.fixture(scope="module")
def spec(app):
    return app.test_client().get("/api/v1/openapi.json").get_json()


def _operations(spec):
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            if method in METHODS:
                yield path, method, operation


def _resolve(spec, node):
    while "$ref" in node:
        target = spec
        for part in node["$ref"][2:].split("/"):
            target = target[part]
        node = target
    return node


def test_the_error_schema_is_the_body_the_api_sends(spec, client):
    error = spec["components"]["schemas"]["Error"]
    assert set(error["properties"]) == {"code", "status", "message", "errors", "request_id"}
    assert set(error["required"]) == {"code", "status", "message", "request_id"}
    body = client.get("/api/v1/orgs").get_json()  # a real error body fits it
    assert set(body) <= set(error["properties"]) and set(error["required"]) <= set(body)


def test_every_operation_documents_its_error_responses(spec):
    for path, method, operation in _operations(spec):
        codes = set(operation["responses"])
        assert {"401", "403", "503"} <= codes, (method, path)
        if "{" in path:
            assert "404" in codes, (method, path)
        if "requestBody" in operation:
            assert {"400", "415", "422"} <= codes, (method, path)
        if method != "get":
            assert "409" in codes, (method, path)
        for code in codes - {"default"}:
            if code.startswith(("4", "5")):
                response = _resolve(spec, operation["responses"][code])
                schema = response["content"]["application/json"]["schema"]
                assert _resolve(spec, schema) is spec["components"]["schemas"]["Error"], (method, path, code)


def _pattern(spec, schema: str, field: str) -> dict:
    return spec["components"]["schemas"][schema]["properties"][field]


@pytest.mark.parametrize(
    "name", ["acme", "a", "a.b-c", "x" * 63, "root", "a..b", "jetpero-x", "-a", "a-", "A", "a_b", "x" * 64, "sys"]
)
def test_the_slug_pattern_is_the_slug_rule(spec, name):
    slug = _pattern(spec, "OrgCreate", "slug")
    documented = bool(re.fullmatch(slug["pattern"], name)) and slug["minLength"] <= len(name) <= slug["maxLength"]
    assert documented == is_slug(name), name
    assert _pattern(spec, "ProjectCreate", "slug") == slug


def test_path_names_carry_the_same_rule(spec):
    for item in spec["paths"].values():
        for param in item.get("parameters", []):
            if param["name"] in ("org", "project", "name"):
                assert all(f"{word}|" in param["schema"]["pattern"] for word in sorted(RESERVED)[:-1])


def test_origins_and_keys_are_described(spec):
    origin = spec["components"]["schemas"]["ProjectCreate"]["properties"]["allowed_origins"]["items"]["pattern"]
    for value, ok in [
        ("https://app.example.com", True),
        ("http://localhost:3000", True),
        ("https://app.example.com/", False),
        ("https://u:p@app.example.com", False),
        ("ftp://app.example.com", False),
        ("HTTPS://app.example.com", False),
    ]:
        assert bool(re.fullmatch(origin, value)) == ok, value
    key = _pattern(spec, "ProviderPut", "api_key")
    assert (key["minLength"], key["maxLength"]) == (1, 4096)
    assert re.fullmatch(key["pattern"], "sk-abc") and not re.fullmatch(key["pattern"], "sk abc")


def test_origins_outside_the_pattern_are_refused_by_the_server(api, org):
    for origin in ("https://[::1", "https://exa_mple.com", "https://app.example.com:"):
        response = api.post(f"/orgs/{org}/projects", json={"slug": "web", "allowed_origins": [origin]})
        assert response.status_code == 422, origin
