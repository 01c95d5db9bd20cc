"""The real `ctrltower server` subprocess: first start writes tokens, SIGTERM stops everything."""

from __future__ import annotations

import stat
from pathlib import Path

from tests.support.server import ServerProcess


def test_first_start_writes_tokens_and_sigterm_stops_all(tmp_path: Path) -> None:
    srv = ServerProcess(tmp_path / "srv", workers=2)
    with srv:
        for name in ("admin.token", "enroll.token"):
            mode = stat.S_IMODE((srv.data_dir / name).stat().st_mode)
            assert mode == 0o600, f"{name} mode {oct(mode)}"
        with srv.client(srv.admin_token) as c:
            r = c.get("/api/v1/whoami")
            assert r.status_code == 200 and r.json()["role"] == "admin"
        viewer = srv.create_token("viewer")
        with srv.client(viewer) as c:
            assert c.get("/api/v1/agents").status_code == 200
            assert c.get("/api/v1/tokens").status_code == 403
        admin_before = srv.admin_token
        assert srv.stop() == 0
        assert not srv.group_alive(), "a child of the server outlived SIGTERM"
        srv.start()  # second start: same tokens, nothing rewritten
        assert srv.admin_token == admin_before
        with srv.client(viewer) as c:
            assert c.get("/api/v1/agents").status_code == 200


def test_live_server_fixture(live_server: ServerProcess) -> None:
    with live_server.client(live_server.create_token("enroll")) as c:
        r = c.post("/api/agent/v1/agents", json={"instance_id": "inst-fixture", "hostname": "h"})
    assert r.status_code == 200 and r.json()["poll_interval_s"] == 0.5
