"""Through the real server (`ctrltower server` subprocess with its metrics process): an agent
registered over the agent API is scraped; /api/v1/metrics answers viewers in the one JSON shape;
failing scrapes make the agent `degraded`; a restarted server keeps the history."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from tests.metrics.exporter import Exporter, wait_until
from tests.support.server import ServerProcess

pytestmark = pytest.mark.slow


def _register(srv: ServerProcess, url: str) -> tuple[str, str]:
    r = httpx.post(
        srv.base_url + "/api/agent/v1/agents",
        json={"instance_id": "metrics-e2e-1", "hostname": "h1", "metrics_url": url},
        headers={"Authorization": f"Bearer {srv.enroll_token}"},
        timeout=10,
    )
    assert r.status_code in (200, 201), r.text
    return str(r.json()["agent_id"]), str(r.json()["agent_token"])


def test_metrics_api_through_the_real_server(tmp_path: Path) -> None:
    t0 = time.time()
    exp = Exporter({})

    def tick() -> None:
        el = time.time() - t0
        exp.values = {"cpu": 0.2 * el, "memory": 3e7, "logs:accepted": 50.0 * el}

    srv = ServerProcess(tmp_path / "srv", poll_interval_s=30, metrics=True, metrics_interval_s=0.3)
    try:
        with srv:
            agent, agent_token = _register(srv, exp.url)
            applied_at = datetime.now(UTC)
            report = {
                "collector_state": "running",
                "uptime_s": 1.0,
                "last_apply": {
                    "result": "applied",
                    "config_hash": "0" * 64,
                    "revision": "abc1234",
                    "at": applied_at,
                },
            }
            r = httpx.post(
                f"{srv.base_url}/api/agent/v1/agents/{agent}/status",
                content=json.dumps(report, default=str),
                headers={"Authorization": f"Bearer {agent_token}", "Content-Type": "application/json"},
                timeout=10,
            )
            assert r.status_code == 200, r.text
            viewer = srv.create_token("viewer")
            with srv.client(viewer) as c:

                def has_rate() -> bool:
                    tick()
                    r = c.get("/api/v1/metrics/latest", params={"agents": agent})
                    return r.status_code == 200 and r.json()["agents"][agent]["logs_in"] is not None

                assert wait_until(has_rate, 30), srv.log_text()
                r = c.get(
                    "/api/v1/metrics/query", params={"agent": agent, "metric": "logs_in", "start": "-5m"}
                )
                assert r.status_code == 200
                body = r.json()
                assert body["resolution"] == "raw" and any(v is not None for _, v in body["points"])
                # the revision apply reported over the agent API is a chart annotation
                assert body["annotations"] == [
                    {"agent": agent, "at": pytest.approx(applied_at.timestamp()), "revision": "abc1234"}
                ]
                r = c.get("/api/v1/metrics/top", params={"metric": "memory"})
                assert r.json()["items"] == [{"agent": agent, "value": 3e7}]
                r = c.get("/api/v1/metrics/query", params={"metric": "nope"})
                assert r.status_code == 400 and r.json()["error"]["code"] == "unknown_metric"
                r = httpx.get(srv.base_url + "/api/v1/metrics/query", params={"metric": "cpu"})
                assert r.status_code == 401 and "error" in r.json()

                exp.mode = "http500"  # scrapes fail: the agent turns degraded, its values stale
                assert wait_until(
                    lambda: c.get(f"/api/v1/agents/{agent}").json().get("status") == "degraded", 20
                ), srv.log_text()
                latest = c.get("/api/v1/metrics/latest", params={"agents": agent}).json()["agents"][agent]
                assert latest["stale"] is True and latest["logs_in"] is None
                h = c.get("/api/v1/metrics/health", params={"agents": agent}).json()["agents"][agent]
                assert h["last_error"] == "HTTP 500" and h["failing"] is True

            srv.stop()
            srv.start()
            with srv.client(viewer) as c:
                params = {"agent": agent, "metric": "memory", "start": "-10m"}
                # 503 metrics_unavailable (JSON) until the metrics process has bound its socket
                assert wait_until(
                    lambda: c.get("/api/v1/metrics/query", params=params).status_code == 200, 20
                )
                r = c.get("/api/v1/metrics/query", params=params)
                assert any(v == 3e7 for _, v in r.json()["points"])  # history survived the restart
    finally:
        exp.close()
