"""Request logs, request ids, metrics and health endpoints."""

from __future__ import annotations

import io
import json
import logging
import time

import pytest
from prometheus_client.parser import text_string_to_metric_families

from app.observability import logs
from tests.helpers import FAKE_KEY


@pytest.fixture
def log_output(client):
    """What JetPero's log handler writes during the test: every line, as it reaches stderr."""
    handler = logs.handler()
    saved, handler.stream = handler.stream, io.StringIO()
    yield handler.stream
    handler.stream = saved


def _request_lines(output: io.StringIO) -> list[dict]:
    lines = [json.loads(line) for line in output.getvalue().splitlines()]
    return [line for line in lines if line["logger"] == "jetpero.request"]


def test_one_json_line_per_request_without_secrets(client, project_token, upstream, log_output):
    ok = client.post(
        "/proxy/openai/v1/embeddings?key=leaky-query-value",
        json={"model": "m", "messages": []},
        headers={"Authorization": f"Bearer {project_token}"},
    )
    ok.get_data()
    ok.close()
    failed = client.get("/proxy/openai/status/500", headers={"x-api-key": project_token + "x"})
    failed.close()
    text = log_output.getvalue()
    assert FAKE_KEY not in text and FAKE_KEY[-12:] not in text
    assert project_token not in text and project_token.split(".")[2] not in text
    assert "leaky-query-value" not in text
    lines = _request_lines(log_output)
    assert [line["status"] for line in lines] == [200, 401]
    first = lines[0]
    assert (first["level"], first["message"]) == ("INFO", "request")
    assert first["time"].endswith("Z") and len(first["time"]) == len("2026-11-26T23:00:00.123Z")
    assert first["route"] == "/proxy/<provider>/<path:path>"
    assert first["provider"] == "openai" and first["org"] and first["project"]
    assert first["request_id"] == ok.headers["X-Request-Id"]
    assert first["duration_ms"] >= first["upstream_ms"] >= 0


def test_request_lines_follow_the_log_level(client, log_output):
    logger = logging.getLogger("jetpero.request")
    logger.setLevel(logging.WARNING)
    try:
        client.get("/healthz").close()
    finally:
        logger.setLevel(logging.NOTSET)
    client.get("/healthz").close()
    assert [line["route"] for line in _request_lines(log_output)] == ["/healthz"]


def test_request_id_on_every_response(client):
    first, second = client.get("/healthz"), client.get("/nope")
    assert len(first.headers["X-Request-Id"]) == 32
    assert second.status_code == 404 and second.json["request_id"] == second.headers["X-Request-Id"]
    assert first.headers["X-Request-Id"] != second.headers["X-Request-Id"]


def test_metrics_off_by_default(client):
    assert client.get("/metrics").status_code == 404


@pytest.fixture(scope="module")
def metrics_app(make_app):
    return make_app(JETPERO_METRICS_TOKEN="scrape-secret")


def test_metrics_need_their_token(metrics_app):
    client = metrics_app.test_client()
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
    response = client.get("/metrics", headers={"Authorization": "Bearer scrape-secret"})
    assert response.status_code == 200
    assert "scrape-secret" not in response.get_data(as_text=True)


def _scrape(app) -> tuple[str, dict]:
    text = app.test_client().get("/metrics", headers={"Authorization": "Bearer scrape-secret"}).get_data(as_text=True)
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }
    return text, samples


def test_metrics_count_requests_and_vault_calls(client, project_token, upstream, metrics_app):
    requests = ("jetpero_requests_total", (("provider", "openai"), ("status", "200"), ("surface", "proxy")))
    count = ("jetpero_proxy_duration_seconds_count", (("provider", "openai"),))
    total = ("jetpero_proxy_duration_seconds_sum", (("provider", "openai"),))
    slowest = ("jetpero_upstream_duration_seconds_bucket", (("le", "+Inf"), ("provider", "openai")))
    fastest = ("jetpero_upstream_duration_seconds_bucket", (("le", "0.005"), ("provider", "openai")))
    before = _scrape(metrics_app)[1]
    for _ in range(3):
        client.post("/proxy/openai/v1/chat/completions", json={}, headers={"x-api-key": project_token}).close()
    client.get("/proxy/openai/slow?seconds=0.02", headers={"x-api-key": project_token}).close()  # 20 ms upstream
    cache_hits = 'jetpero_cache_lookups_total{cache="provider_keys",result="hit"}'
    deadline = time.monotonic() + 3  # cache counts are added once per poll (0.5 s here)
    while True:
        text, after = _scrape(metrics_app)  # request metrics: added at each scrape
        if cache_hits in text or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert after[requests] - before.get(requests, 0) == 4
    assert after[count] - before.get(count, 0) == 4
    assert after[slowest] - before.get(slowest, 0) == 4  # buckets are cumulative
    assert after[fastest] - before.get(fastest, 0) <= 3
    assert after[total] - before.get(total, 0) >= 0.02
    for name in (
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
