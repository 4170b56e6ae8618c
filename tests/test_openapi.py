"""The OpenAPI spec and docs: every admin endpoint of DESIGN.md, documented and summarised."""

from __future__ import annotations

import json

import pytest

P = "/api/v1/orgs/{org}/projects/{project}"
EXPECTED = {
    "/api/v1/orgs": {"get", "post"},
    "/api/v1/orgs/{org}": {"get", "delete"},
    "/api/v1/orgs/{org}/members": {"get", "post"},
    "/api/v1/orgs/{org}/members/{member_id}": {"get", "delete"},
    "/api/v1/orgs/{org}/projects": {"get", "post"},
    P: {"get", "patch", "delete"},
    f"{P}/providers": {"get"},
    f"{P}/providers/{{name}}": {"put", "get", "delete"},
    f"{P}/tokens": {"get", "post"},
    f"{P}/tokens/{{token_id}}": {"get", "delete"},
    f"{P}/jwks.json": {"get"},
    f"{P}/identity-providers": {"get"},
    f"{P}/identity-providers/{{name}}": {"put", "get", "delete"},
    f"{P}/policy": {"get", "put"},
    f"{P}/tokens/{{token_id}}/policy": {"get", "put"},
    f"{P}/providers/{{name}}/prices": {"get", "put"},
    "/api/v1/audit": {"get"},
    "/api/v1/audit/verify": {"get"},
    "/api/v1/orgs/{org}/audit": {"get"},
    "/api/v1/orgs/{org}/audit/verify": {"get"},
    "/api/v1/orgs/{org}/settings": {"get", "put"},
    f"{P}/usage": {"get", "delete"},
    f"{P}/usage/records": {"get"},
    f"{P}/usage/stream": {"get"},
    f"{P}/providers/{{name}}/versions": {"get"},
    f"{P}/providers/{{name}}/versions/{{version}}/restore": {"post"},
    f"{P}/providers/{{name}}/rotate": {"post"},
    f"{P}/providers/{{name}}/rotation-policy": {"put"},
    f"{P}/tokens/{{token_id}}/rotate": {"post"},
    f"{P}/signing-key": {"get"},
    f"{P}/signing-key/rotate": {"post"},
    f"{P}/signing-key/retire": {"post"},
    f"{P}/encryption-key": {"get"},
    f"{P}/encryption-key/rotate": {"post"},
    f"{P}/encryption-key/rewrap": {"post"},
    "/api/v1/orgs/{org}/rotation-due": {"get"},
}
METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}


@pytest.fixture(scope="module")
def spec(app):
    response = app.test_client().get("/api/v1/openapi.json")  # public: no token needed
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    return json.loads(response.get_data(as_text=True))


def _operations(spec):
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            if method in METHODS:
                yield path, method, operation


def test_every_design_path_and_method(spec):
    assert spec["openapi"].startswith("3.")
    assert spec["info"]["title"] and spec["info"]["version"] == "v1"
    found = {path: {m for m in item if m in METHODS} for path, item in spec["paths"].items()}
    assert found == EXPECTED


def test_every_operation_is_summarised_and_secured(spec):
    assert spec["security"] == [{"bearerAuth": []}]
    assert spec["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    for path, method, operation in _operations(spec):
        assert operation.get("summary", "").strip(), (method, path)
        assert any(code.startswith("2") for code in operation["responses"]), (method, path)
        if method in ("post", "put", "patch"):
            assert "422" in operation["responses"], (method, path)
            assert "requestBody" in operation, (method, path)


def test_path_parameters_are_documented_slugs(spec):
    for path, item in spec["paths"].items():
        names = {p["name"] for p in item.get("parameters", []) if p["in"] == "path"}
        assert names == {part[1:-1] for part in path.split("/") if part.startswith("{")}, path
        for param in item.get("parameters", []):
            if param["name"] in ("org", "project", "name"):
                assert param["schema"]["pattern"].endswith("[a-z0-9](?:[a-z0-9.-]{0,61}[a-z0-9])?$"), (path, param)


def test_every_reference_resolves(spec):
    def refs(node):
        if isinstance(node, dict):
            if "$ref" in node:
                yield node["$ref"]
            for value in node.values():
                yield from refs(value)
        elif isinstance(node, list):
            for value in node:
                yield from refs(value)

    for ref in refs(spec):
        assert ref.startswith("#/")
        target = spec
        for part in ref[2:].split("/"):
            target = target[part]  # KeyError if dangling


def test_keys_are_write_only_in_the_spec(spec):
    schemas = spec["components"]["schemas"]
    assert schemas["ProviderPut"]["properties"]["api_key"]["writeOnly"] is True
    assert "api_key" in schemas["ProviderPut"]["required"]
    assert "api_key" not in schemas["Provider"]["properties"]
    assert "ciphertext" not in json.dumps(schemas)


def test_docs_page(app):
    response = app.test_client().get("/api/v1/docs")
    assert response.status_code == 200
    assert "swagger" in response.get_data(as_text=True).lower()
    assert "/api/v1/openapi.json" in response.get_data(as_text=True)
