"""The server with its metrics process: started and stopped with the server; failing scrapes -> degraded."""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path

import pytest

from tests.conftest import free_port
from tests.support.server import ServerProcess
from tests.webui.helpers import registration

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("metrics.service") is None, reason="the metrics part is not present"
)


def test_metrics_process_lifecycle_and_degraded_status(tmp_path: Path) -> None:
    srv = ServerProcess(tmp_path / "srv", metrics=True, metrics_interval_s=0.2, poll_interval_s=5.0)
    with srv:
        srv.wait_metrics()
        dead_port = free_port()  # nothing listens there: every scrape fails
        with srv.client(srv.enroll_token) as c:
            reg = c.post(
                "/api/agent/v1/agents",
                json=registration("inst-metrics-1", metrics_url=f"http://127.0.0.1:{dead_port}/metrics"),
            ).json()
        status = None
        deadline = time.monotonic() + 20
        with srv.client(srv.admin_token) as admin, srv.client(reg["agent_token"]) as agent:
            while time.monotonic() < deadline:
                agent.post(
                    f"/api/agent/v1/agents/{reg['agent_id']}/status",
                    json={"collector_state": "running", "uptime_s": 1},
                )
                status = admin.get(f"/api/v1/agents/{reg['agent_id']}").json()["status"]
                if status == "degraded":
                    break
                time.sleep(0.3)
            assert status == "degraded", srv.log_text()
            assert admin.get("/api/v1/agents?status=degraded").json()["page"]["total"] == 1
        assert srv.stop() == 0  # SIGTERM, before the context's SIGKILL sweep could hide a straggler
        deadline = time.monotonic() + 10
        while srv.group_alive() and time.monotonic() < deadline:  # exited children linger briefly as zombies
            time.sleep(0.1)
        assert not srv.group_alive(), "the metrics process outlived the server"
        assert not (srv.data_dir / "metrics.sock").exists()
