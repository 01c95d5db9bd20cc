"""The real `ctrltower server` subprocess: first start writes tokens, SIGTERM stops everything,
SIGKILL of the main process leaves nothing behind, leftovers on a data dir are named, not waited on."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.agent.helpers import wait_until
from tests.conftest import ROOT
from tests.support.procs import alive, descendants
from tests.support.ready import NotReady, wait_ready
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


def test_sigkill_of_the_main_process_leaves_no_child_behind(tmp_path: Path) -> None:
    """Issue 10: `kill -9 <server pid>` (the main process only, not its group) used to leave the
    metrics process and the granian workers running; they now get a parent-death signal."""
    srv = ServerProcess(tmp_path / "srv", workers=2, metrics=True, metrics_interval_s=0.5)
    with srv:
        srv.wait_metrics()
        assert srv.proc is not None
        children = descendants(srv.proc.pid)
        assert len(children) >= 3, children  # two workers and the metrics process at least
        os.kill(srv.proc.pid, signal.SIGKILL)
        srv.proc.wait(10)
        wait_until(lambda: not any(alive(p) for p in children), 10, what="the children to exit")
        # and the data dir is free again: a new server starts on it (same port)
        srv.start()
        srv.wait_metrics()


def test_start_on_a_data_dir_whose_metrics_process_lives_says_so(tmp_path: Path) -> None:
    """A metrics process left behind (here: started by hand, as the server would) owns metrics.duckdb:
    a new server on that data dir names its pid and exits 5 instead of hanging on DuckDB's lock."""
    from webui.settings import ServerSettings

    data_dir = tmp_path / "srv"
    data_dir.mkdir()
    settings = ServerSettings(data_dir=data_dir, metrics_interval_s=0.5)
    code = "import os, sys; from webui.serve import _metrics_main; _metrics_main(sys.argv[1], os.getppid())"
    log = tmp_path / "orphan.log"
    with log.open("ab") as out:
        orphan = subprocess.Popen(
            [sys.executable, "-c", code, settings.model_dump_json()], cwd=ROOT, stdout=out, stderr=out
        )
    try:
        wait_ready(orphan, (data_dir / "metrics.sock").exists, "metrics process", log.read_text)
        srv = ServerProcess(data_dir, metrics=True)
        with pytest.raises(NotReady) as failed:
            srv.start()
        assert srv.proc is not None and srv.proc.returncode == 5
        message = str(failed.value)
        assert f"metrics process of an earlier server (pid {orphan.pid})" in message, message
        assert orphan.poll() is None and (data_dir / "metrics.sock").exists()  # left alone
        # and two servers on one data dir: the second one says so too
        orphan.terminate()
        assert orphan.wait(30) == 0
        with ServerProcess(data_dir) as first:
            second = ServerProcess(data_dir)
            with pytest.raises(NotReady) as twice:
                second.start()
            assert f"another ctrltower server (pid {first.proc.pid if first.proc else 0})" in str(twice.value)
            assert second.proc is not None and second.proc.returncode == 5
    finally:
        if orphan.poll() is None:
            orphan.kill()
            orphan.wait(10)
