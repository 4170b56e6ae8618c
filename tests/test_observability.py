"""Request logs, request ids, metrics and health endpoints."""

from __future__ import annotations

import json
import logging
import time

import pytest

from app import create_app
from app.observability import JsonLines
from tests.conftest import FAKE_KEY, make_config


def _lines(caplog) -> list[str]:
    formatter = JsonLines()
    return [formatter.format(record) for record in caplog.records]


def _request_lines(caplog) -> list[dict]:
    return [json.loads(line) for line in _lines(caplog) if '"jetpero.request"' in line]


def test_one_json_line_per_request_without_secrets(client, project_token, upstream, caplog):
    caplog.set_level(logging.INFO)
    ok = client.post(
        "/proxy/openai/v1/chat/completions?key=leaky-query-value",
        json={"model": "m", "messages": []},
        headers={"Authorization": f"Bearer {project_token}"},
    )
    ok.get_data()
    ok.close()
    failed = client.get("/proxy/openai/status/500", headers={"x-api-key": project_token + "x"})
    failed.close()
    text = "\n".join(_lines(caplog))
    assert FAKE_KEY not in text and FAKE_KEY[-12:] not in text
    assert project_token not in text and project_token.split(".")[2] not in text
    assert "leaky-query-value" not in text
    lines = _request_lines(caplog)
    assert [line["status"] for line in lines] == [200, 401]
    first = lines[0]
    assert first["route"] == "/proxy/<provider>/<path:path>"
    assert first["provider"] == "openai" and first["org"] and first["project"]
    assert first["request_id"] == ok.headers["X-Request-Id"]
    assert first["duration_ms"] >= first["upstream_ms"] >= 0


def test_request_id_on_every_response(client):
    first, second = client.get("/healthz"), client.get("/nope")
    assert len(first.headers["X-Request-Id"]) == 32
    assert second.status_code == 404 and second.json["request_id"] == second.headers["X-Request-Id"]
    assert first.headers["X-Request-Id"] != second.headers["X-Request-Id"]


def test_metrics_off_by_default(client):
    assert client.get("/metrics").status_code == 404


@pytest.fixture(scope="module")
def metrics_app(bao, approle_file):
    app = create_app(make_config(bao, approle_file, JETPERO_METRICS_TOKEN="scrape-secret"))
    yield app
    app.extensions["jetpero"].stop()


def test_metrics_need_their_token(metrics_app):
    client = metrics_app.test_client()
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
    response = client.get("/metrics", headers={"Authorization": "Bearer scrape-secret"})
    assert response.status_code == 200
    assert "scrape-secret" not in response.get_data(as_text=True)


def test_metrics_count_requests_and_vault_calls(client, project_token, upstream, metrics_app):
    for _ in range(3):
        client.post("/proxy/openai/v1/chat/completions", json={}, headers={"x-api-key": project_token}).close()
    cache_hits = 'jetpero_cache_lookups_total{cache="provider_keys",result="hit"}'
    deadline = time.monotonic() + 3  # cache counts are added once per poll (0.5 s here)
    while True:
        text = (
            metrics_app.test_client()
            .get("/metrics", headers={"Authorization": "Bearer scrape-secret"})
            .get_data(as_text=True)
        )
        if cache_hits in text or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert 'jetpero_requests_total{provider="openai",status="200",surface="proxy"}' in text
    for name in (
        "jetpero_proxy_duration_seconds_bucket",
        "jetpero_upstream_duration_seconds_bucket",
        'jetpero_vault_call_duration_seconds_count{identity="project"}',
        'jetpero_cache_lookups_total{cache="provider_keys",result="hit"}',
        "jetpero_active_streams",
    ):
        assert name in text
    assert FAKE_KEY not in text and project_token not in text


def test_healthz_and_readyz(client):
    assert client.get("/healthz").json == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json["status"] == "ready"
    assert ready.json["checks"] == {"vault": "unsealed", "transit": "ok", "change_feed": "fresh"}
