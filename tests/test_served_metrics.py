"""Metrics in the served configuration: gunicorn workers aggregated by prometheus_client's
multiprocess mode, request metrics tallied per worker, and the metrics directory cleaned up."""

from __future__ import annotations

import time
from pathlib import Path

import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.helpers import bearer
from tests.servers import Gunicorn

SHM = Path("/dev/shm")  # noqa: S108 - only listed


def _metrics_dirs() -> set[Path]:
    return set(SHM.glob("jetpero-metrics-*")) if SHM.is_dir() else set()


def _requests_total(url: str) -> float:
    text = requests.get(f"{url}/metrics", headers=bearer("scrape-secret"), timeout=5).text
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "jetpero_requests_total" and sample.labels.get("surface") == "proxy"
    )


def test_workers_metrics_add_up_and_their_directory_goes_with_the_master(
    bao, approle_file, provider, project_token, upstream, tmp_path
):
    before = _metrics_dirs()
    env = {
        "VAULT_ADDR": bao.addr,
        "VAULT_APPROLE_FILE": approle_file,
        "JETPERO_ALLOW_PRIVATE_UPSTREAMS": "true",
        "JETPERO_SYNC_INTERVAL": "0.5",
        "JETPERO_METRICS_TOKEN": "scrape-secret",
        "JETPERO_LOG_LEVEL": "WARNING",
    }
    server = Gunicorn(env, tmp_path / "gunicorn.log", workers=2)
    try:
        made = _metrics_dirs() - before
        assert len(made) == (1 if SHM.is_dir() else 0)
        with requests.Session() as session:  # new connections: both workers get some
            for _ in range(20):
                response = session.get(f"{server.url}/proxy/openai/v1/models", headers=bearer(project_token))
                assert response.status_code == 200
                session.close()
        deadline = time.monotonic() + 5  # every worker adds its tally at its next poll (0.5 s)
        while (total := _requests_total(server.url)) < 20 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert total == 20
    finally:
        server.stop()
    assert not (made & _metrics_dirs())
