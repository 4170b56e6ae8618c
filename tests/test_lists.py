"""Lists come in pages (issue 14.10): `limit` + an opaque `cursor`, `Link: rel="next"`, and Vault
calls in proportion to the page, not to the whole list."""

from __future__ import annotations

import threading
import time
import uuid
from contextlib import contextmanager

import pytest
import requests

from app.vault import kv
from app.vault.layout import KV, PROVIDERS, TOKENS, record
from tests.checks import assert_error
from tests.helpers import FAKE_KEY, create_project, issue_token, put_provider, unique
from tests.servers import Gunicorn


@contextmanager
def vault_calls(app):
    """Counts the HTTP requests the app's worker makes to Vault meanwhile (`.calls`)."""
    session = app.extensions["jetpero"].vault._session
    lock = threading.Lock()

    class Count:
        calls = 0

    def hook(response, *args, **kwargs):
        with lock:
            Count.calls += 1
        return response

    session.hooks["response"].append(hook)
    try:
        yield Count
    finally:
        session.hooks["response"].remove(hook)


def next_link(response) -> str | None:
    link = response.headers.get("Link")
    if link is None:
        return None
    target, rel = link.split(";", 1)
    assert rel.strip() == 'rel="next"' and target.startswith("</api/v1/") and target.endswith(">"), link
    return target[1:-1]


def walk(api, path: str, limit: int) -> list[list[dict]]:
    """Every page of a list, following its Link headers."""
    pages, url = [], f"/api/v1{path}?limit={limit}"
    while url:
        response = api.client.get(url, headers={"Authorization": f"Bearer {api.token}"})
        assert response.status_code == 200, response.get_json()
        pages.append(response.get_json())
        url = next_link(response)
        assert len(pages) < 100
    return pages


def _seed_tokens(bao, project, count: int) -> list[str]:
    client, ids = bao.root(project.namespace), sorted(uuid.uuid4().hex for _ in range(count))
    stored = {"name": "seeded", "environment": "development", "scope": ["*"], "allowed_origins": None,
              "expires_at": int(time.time()) + 3600, "created_by": "operator:test", "created_at": "2026-01-01T00:00:00Z",
              "revoked_at": None}  # fmt: skip
    for token_id in ids:
        kv.write(client, KV, record(TOKENS, token_id), stored, cas=0)
    return ids


def test_tokens_page_by_page_in_id_order(api):
    project = create_project(api)
    ids = sorted(issue_token(api, project, name=f"t{i}")["id"] for i in range(5))
    pages = walk(api, f"{project.path}/tokens", 2)
    assert [len(page) for page in pages] == [2, 2, 1]
    assert [token["id"] for page in pages for token in page] == ids
    assert all("token" not in token for page in pages for token in page)  # never a value


def test_default_page_is_the_whole_of_a_short_list(api):
    project = create_project(api)
    issue_token(api, project)
    response = api.get(f"{project.path}/tokens")
    assert response.status_code == 200 and len(response.json) == 1
    assert "Link" not in response.headers


@pytest.mark.parametrize("kind", ["members", "projects", "providers", "orgs"])
def test_every_list_pages(api, kind):
    project = create_project(api)
    org_path = f"/orgs/{project.org}"
    if kind == "members":
        made = sorted(
            api.post(f"{org_path}/members", json={"name": f"m{i}", "role": "viewer"}).json["id"] for i in range(3)
        )
        path, key = f"{org_path}/members", "id"
    elif kind == "projects":
        made = sorted([project.slug, *(create_project(api, project.org).slug for _ in range(2))])
        path, key = f"{org_path}/projects", "slug"
    elif kind == "providers":
        made = ["a1", "b2", "c3"]
        for name in made:
            put_provider(api, project, name, template="openai", api_key=FAKE_KEY, base_url="http://127.0.0.1:9")
        path, key = f"{project.path}/providers", "name"
    else:
        made = sorted([project.org, *(api.post("/orgs", json={"slug": unique("org")}).json["slug"] for _ in range(2))])
        path, key = "/orgs", "slug"
    names = [item[key] for page in walk(api, path, 2) for item in page]
    assert names == sorted(names) and len(names) == len(set(names))
    assert set(made) <= set(names)
    if kind != "orgs":  # other tests' orgs are there too
        assert names == made


def test_a_member_pages_through_their_own_org_only(api, org):
    viewer = api.as_(api.post(f"/orgs/{org}/members", json={"name": "v", "role": "viewer"}).json["token"])
    assert [o["slug"] for o in viewer.get("/orgs?limit=1").json] == [org]
    assert "Link" not in viewer.get("/orgs?limit=1").headers


def test_vault_calls_follow_the_page_not_the_list(app, api, bao):
    project = create_project(api)
    ids = _seed_tokens(bao, project, 60)
    api.get(f"{project.path}/tokens?limit=1")  # warm: the project's Vault token
    with vault_calls(app) as small:
        first = api.get(f"{project.path}/tokens?limit=5")
    with vault_calls(app) as large:
        everything = api.get(f"{project.path}/tokens?limit=60")
    assert [t["id"] for t in first.json] == ids[:5] and len(everything.json) == 60
    assert small.calls <= 5 + 3, small.calls  # one LIST, the page's 5 reads, a little bookkeeping
    assert large.calls >= 60
    with vault_calls(app) as last:
        tail = api.client.get(next_link(first), headers={"Authorization": f"Bearer {api.token}"})
    assert [t["id"] for t in tail.json] == ids[5:10] and last.calls <= 8


def test_issue_reads_only_the_named_providers(app, api, bao):
    project = create_project(api)
    put_provider(api, project, "openai", template="openai", api_key=FAKE_KEY, base_url="http://127.0.0.1:9")
    client = bao.root(project.namespace)
    for index in range(40):  # records only the listing would read: a LIST costs one call, reads 40
        kv.write(client, KV, record(PROVIDERS, f"extra{index}"), {"template": "openai"}, cas=0)
    body = {"name": "t", "environment": "development", "expires_in": 600, "scope": ["openai"]}
    with vault_calls(app) as count:
        assert api.post(f"{project.path}/tokens", json=body).status_code == 201
    assert count.calls <= 6, count.calls  # project record, one provider read, token record, signing
    refused = api.post(f"{project.path}/tokens", json={**body, "scope": ["openai", "nope", "zeta"]})
    assert "nope, zeta" in assert_error(refused, 422)["message"]


@pytest.mark.parametrize(
    "query", ["limit=0", "limit=1001", "limit=x", "cursor=", "cursor=%25%25", "cursor=a", "cursor=4pyT"]
)
def test_bad_page_arguments_are_422(api, org, query):
    response = api.get(f"/orgs/{org}/projects?{query}")
    assert_error(response, 422)


def test_a_cursor_past_the_end_is_an_empty_page(api):
    project = create_project(api)
    issue_token(api, project)
    url = next_link(api.get("/orgs?limit=1"))
    cursor = url.split("cursor=")[1]
    response = api.get(f"{project.path}/tokens?cursor={cursor}")  # any list accepts any cursor of its kind
    assert response.status_code == 200
    assert api.get(f"{project.path}/tokens?cursor=enp6").json == []  # "zzz": after every hex id


def test_openapi_documents_the_page(app):
    spec = app.test_client().get("/api/v1/openapi.json").get_json()
    lists = [
        "/api/v1/orgs",
        "/api/v1/orgs/{org}/members",
        "/api/v1/orgs/{org}/projects",
        "/api/v1/orgs/{org}/projects/{project}/providers",
        "/api/v1/orgs/{org}/projects/{project}/tokens",
    ]
    for path in lists:
        get = spec["paths"][path]["get"]
        params = {p["name"]: p for p in get["parameters"] if p["in"] == "query"}
        assert params["limit"]["schema"]["maximum"] == 1000, path
        assert "cursor" in params, path
        assert "Link" in get["responses"]["200"]["headers"], path


def test_pages_under_gunicorn_gevent_workers(api, bao, approle_file, operator_token, tmp_path):
    """The page's concurrent reads work in gevent workers (threads there are greenlets)."""
    project = create_project(api)
    ids = _seed_tokens(bao, project, 30)
    env = {"VAULT_ADDR": bao.addr, "VAULT_APPROLE_FILE": approle_file, "JETPERO_LOG_LEVEL": "WARNING"}
    server = Gunicorn(env, tmp_path / "gunicorn.log", workers=1)
    try:
        session, seen, url = requests.Session(), [], f"/api/v1{project.path}/tokens?limit=20"
        session.headers["Authorization"] = f"Bearer {operator_token}"
        while url:
            response = session.get(server.url + url, timeout=30)
            assert response.status_code == 200, response.text
            seen += [token["id"] for token in response.json()]
            url = response.links.get("next", {}).get("url")
        assert seen == ids
    finally:
        server.stop()
