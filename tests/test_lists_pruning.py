"""Expired and revoked token records are pruned after JETPERO_TOKEN_RECORD_RETENTION_DAYS
(issue 14.10): by one node at a time (a database lease), recorded on the audit trail first,
and a pruned token stays refused."""

from __future__ import annotations

import secrets
import time
import uuid

import pytest
from sqlalchemy import select

from app.services import audit, pruning
from app.store.schema import audit_records
from app.vault import kv
from app.vault.bootstrap import bootstrap
from app.vault.layout import KV, TOKENS, record
from tests.checks import CheckedApi
from tests.helpers import FAKE_KEY, Bao, bearer, create_project, issue_token, put_provider
from tools import openbao, procs

DAY = 86_400
STAMP = "%Y-%m-%dT%H:%M:%SZ"


@pytest.fixture(scope="module")
def own(make_app, tmp_path_factory):
    """An app on a Vault of its own (a run prunes every project: only this module's) and its API."""
    tmp = tmp_path_factory.mktemp("pruning")
    port, token = procs.free_port(), secrets.token_hex(16)
    proc = openbao.start_dev(port, token, tmp / "bao.log")
    try:
        bao = Bao(addr=openbao.address(port), root_token=token, process=proc)
        bootstrap(bao.root(), str(tmp / "approle.json"))
        app = make_app(
            bao=bao,
            approle_file=str(tmp / "approle.json"),
            JETPERO_DATABASE_URL=f"sqlite:///{tmp}/jetpero.db",
            JETPERO_TOKEN_RECORD_RETENTION_DAYS=30,
        )
        result = app.test_cli_runner().invoke(args=["operator-token", "--name", "pruning"])
        assert result.exit_code == 0, result.output
        yield bao, app, CheckedApi(app.test_client(), result.output.strip())
        app.extensions["jetpero"].stop()
    finally:
        procs.stop(proc)


def _stored(days_ago_expired: float | None = None, days_ago_revoked: float | None = None) -> dict:
    now = time.time()
    expires = now - days_ago_expired * DAY if days_ago_expired is not None else now + 3600
    revoked = None if days_ago_revoked is None else time.strftime(STAMP, time.gmtime(now - days_ago_revoked * DAY))
    return {"name": "seeded", "environment": "development", "scope": ["*"], "allowed_origins": None,
            "expires_at": int(expires), "created_by": "operator:test", "created_at": "2026-01-01T00:00:00Z",
            "revoked_at": revoked}  # fmt: skip


def _seed(bao, project, **cases: dict) -> dict[str, str]:
    client, ids = bao.root(project.namespace), {}
    for case, stored in cases.items():
        ids[case] = uuid.uuid4().hex
        kv.write(client, KV, record(TOKENS, ids[case]), stored, cas=0)
    return ids


def _job(app, holder: str = "node-a", every: float = 0.001) -> pruning.PruningJob:
    """A job whose lease (held for `every` seconds) has run out by the next test, unless `every` is long."""
    worker = app.extensions["jetpero"]
    return pruning.PruningJob(worker.vault, app.extensions["jetpero.db"], 30, every=every, holder=holder)


def _listed(api, project) -> set[str]:
    return {token["id"] for token in api.get(f"{project.path}/tokens?limit=1000").json}


def _pruned_records(app) -> list[dict]:
    with app.extensions["jetpero.db"].connect() as conn:
        rows = conn.execute(select(audit_records).where(audit_records.c.action == "token.pruned"))
        return [dict(row) for row in rows.mappings()]


def test_old_expired_and_revoked_records_go_the_rest_stay(own):
    bao, app, api = own
    project, other = create_project(api), create_project(api)
    ids = _seed(
        bao,
        project,
        active=_stored(),
        expired_long_ago=_stored(days_ago_expired=31),
        revoked_long_ago=_stored(days_ago_revoked=40),
        expired_lately=_stored(days_ago_expired=29),
        revoked_lately=_stored(days_ago_revoked=2),
    )
    elsewhere = _seed(bao, other, expired_long_ago=_stored(days_ago_expired=90))
    issued = issue_token(api, project)["id"]
    before = len(_pruned_records(app))

    assert _job(app).run() == 3
    assert _listed(api, project) == {ids["active"], ids["expired_lately"], ids["revoked_lately"], issued}
    assert _listed(api, other) == set()
    assert elsewhere

    records = _pruned_records(app)[before:]
    assert [r["outcome"] for r in records] == ["requested", "succeeded"]
    assert records[0]["chain"] == audit.OPERATOR_CHAIN and records[0]["actor_kind"] == "job"
    assert records[0]["detail"].startswith("3 token records")
    assert _job(app).run() == 0  # nothing left to prune: no further record
    assert len(_pruned_records(app)) == before + 2


def test_one_node_at_a_time(own):
    bao, app, api = own
    project = create_project(api)
    _seed(bao, project, old=_stored(days_ago_revoked=45))
    first, second = _job(app, "node-b", every=60), _job(app, "node-c", every=60)
    assert first.run() == 1
    _seed(bao, project, newer=_stored(days_ago_revoked=50))
    assert second.run() is None  # node-b holds the lease for a period
    assert len(_listed(api, project)) == 1  # the newer one waits
    assert first.run() == 1  # the holder runs again when it is due
    assert _listed(api, project) == set()


def test_nothing_is_deleted_without_an_audit_trail(own):
    bao, app, api = own
    project = create_project(api)
    ids = _seed(bao, project, old=_stored(days_ago_expired=60))
    with pytest.raises(audit.AuditUnavailable):
        pruning.prune_tokens(app.extensions["jetpero"].vault, 30)  # no trail bound
    assert _listed(api, project) == {ids["old"]}


def test_a_pruned_revoked_token_stays_refused(own, upstream):
    bao, app, api = own
    project = create_project(api)
    put_provider(api, project, "openai", template="openai", api_key=FAKE_KEY, base_url=upstream.url)
    issued = issue_token(api, project, expires_in=3600)
    client = app.test_client()
    call = {"json": {"model": "gpt-4o-mini", "messages": []}, "headers": bearer(issued["token"])}
    assert client.post("/proxy/openai/v1/chat/completions", **call).status_code == 200
    assert api.delete(f"{project.path}/tokens/{issued['id']}").status_code == 204
    data, version = kv.read(bao.root(project.namespace), KV, record(TOKENS, issued["id"]))
    old = {**data, "revoked_at": time.strftime(STAMP, time.gmtime(time.time() - 31 * DAY))}
    kv.write(bao.root(project.namespace), KV, record(TOKENS, issued["id"]), old, cas=version)
    with audit.bound(app.extensions["jetpero.db"]):
        assert pruning.prune_tokens(app.extensions["jetpero"].vault, 30) >= 1
    assert _listed(api, project) == set()
    app.extensions["jetpero"].project_tokens.clear()  # a worker that never saw it: Vault decides
    assert client.post("/proxy/openai/v1/chat/completions", **call).status_code == 401
