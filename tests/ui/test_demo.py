"""`make demo` for real: `python -m demo.run` as a subprocess with the real server, reconciler,
agents and collectors; wait (bounded) until the API shows every agent Synced with non-zero log
rates and the fleet page shows them, then SIGINT and check that every process it started is gone.
A second run on the same data directory works and reuses the same agent identities; after a
SIGKILL of the demo, the next run stops the orphaned processes and works."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import httpx
import pytest

from tests.conftest import ROOT, free_port
from tests.support.procs import alive, descendants
from tests.support.ready import patience
from tests.ui.demo_support import process_names, ui_login

pytestmark = [pytest.mark.slow, pytest.mark.collector]
READY_TIMEOUT_S = patience(90.0)  # a bound on the fleet becoming ready, scaled for load


def _collectors(proc: subprocess.Popen[bytes]) -> int:
    names = process_names(descendants(proc.pid))
    return sum("otelcol-contrib" in n for n in names.values())


def _wait_ready(
    base: str, token_file: Path, proc: subprocess.Popen[bytes], log: Path, started: float, run: int
) -> tuple[str, dict]:
    """Ready = this run (not the data a previous run left in .demo) printed its banner, runs three
    collectors, and its server and metrics process have fresh reports: 3 agents Synced and seen since
    the run started, each scraped since then with a non-zero log rate."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    last: object = None
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"demo exited early ({proc.returncode}):\n{log.read_text()}"
        try:
            if log.read_text().count("Admin token:") < run or _collectors(proc) < 3:
                last = "starting"
                time.sleep(1.0)
                continue
            token = token_file.read_text().strip()
            headers = {"Authorization": f"Bearer {token}"}
            agents = httpx.get(f"{base}/api/v1/agents", headers=headers, timeout=5).json()["items"]
            ids = [a["id"] for a in agents]
            fresh = all(
                a["last_seen"] and datetime.fromisoformat(a["last_seen"]).timestamp() > started
                for a in agents
            )
            synced = len(agents) == 3 and fresh and all(a["sync_status"] == "Synced" for a in agents)
            latest: dict = {}
            if synced:
                params = {"agents": ",".join(ids)}
                url = f"{base}/api/v1/metrics/latest"
                latest = httpx.get(url, params=params, headers=headers, timeout=5).json()["agents"]
                values = [latest.get(i) or {} for i in ids]
                if all(v.get("logs_in") and (v.get("ts") or 0) > started for v in values):
                    return token, {"agents": agents, "latest": latest}
            last = {
                "agents": [(a["hostname"], a["sync_status"], a["last_seen"]) for a in agents],
                "latest": latest,
            }
        except (OSError, httpx.HTTPError, ValueError, KeyError):
            pass
        time.sleep(1.0)
    pytest.fail(f"demo not ready in {READY_TIMEOUT_S}s; last state {last}\n{log.read_text()[-3000:]}")


def _run_demo(data_dir: Path, log: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    env = dict(os.environ, DEMO_PORT=str(port), DEMO_DIR=str(data_dir))
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "demo.run"], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
        )
    return proc, port


def _stop_and_check(proc: subprocess.Popen[bytes], log: Path) -> None:
    children = descendants(proc.pid)
    names = process_names(children)
    assert any("otelcol-contrib" in n for n in names.values()), names  # real collectors were running
    proc.send_signal(signal.SIGINT)
    try:
        code = proc.wait(timeout=40)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail(f"demo did not stop within 40 s after SIGINT\n{log.read_text()[-3000:]}")
    assert code == 0, log.read_text()[-3000:]
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(alive(p) for p in children):
        time.sleep(0.1)
    left = {p: names.get(p) for p in children if alive(p)}
    assert not left, f"processes left behind: {left}"


def _cleanup(proc: subprocess.Popen[bytes]) -> None:
    """After a failure: stop the demo the normal way, then SIGKILL whatever it left (bounded)."""
    if proc.poll() is not None:
        return
    children = descendants(proc.pid)
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)
    for pid in children:
        if alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def test_demo_runs_everything_and_stops_cleanly(tmp_path: Path) -> None:
    data_dir = tmp_path / "demo"
    log = tmp_path / "demo.out"
    token_file = data_dir / "server" / "admin.token"
    started = time.time()
    proc, port = _run_demo(data_dir, log)
    base = f"http://127.0.0.1:{port}"
    try:
        token, state = _wait_ready(base, token_file, proc, log, started, 1)
        groups = {a["group"] for a in state["agents"]}
        assert groups == {"edge", "edge-canary"}
        # the demo signs its configs and every agent runs only what verifies
        assert all(a["verifies_signatures"] is True for a in state["agents"]), state["agents"]
        assert (data_dir / "keys" / "signing.key").stat().st_mode & 0o777 == 0o600
        output = log.read_text()
        assert f"Web UI:      {base}/" in output and f"Admin token: {token}" in output
        # the fleet page itself shows them synced with non-zero log rates
        ui = ui_login(base, token)
        try:
            page = ui.get("/").text
        finally:
            ui.close()
        assert page.count('data-sync="Synced"') == 3
        rates = [line for line in page.splitlines() if 'data-metric="logs_in"' in line]
        assert len(rates) == 3 and all("—" not in r for r in rates), rates
        first_ids = sorted(a["id"] for a in state["agents"])
        _stop_and_check(proc, log)
    finally:
        _cleanup(proc)

    # a second run on the same .demo works and the agents keep their identities; then the demo is
    # SIGKILLed (no chance to clean up) and its processes are orphaned
    started = time.time()
    proc, port = _run_demo(data_dir, log)
    orphans: set[int] = set()
    try:
        _, state = _wait_ready(f"http://127.0.0.1:{port}", token_file, proc, log, started, 2)
        assert sorted(a["id"] for a in state["agents"]) == first_ids
        orphans = descendants(proc.pid)
        proc.kill()
        proc.wait(timeout=10)
        assert any(alive(p) for p in orphans)
    finally:
        _cleanup(proc)

    # a third run stops what the killed one left, then works as usual
    started = time.time()
    proc, port = _run_demo(data_dir, log)
    try:
        _, state = _wait_ready(f"http://127.0.0.1:{port}", token_file, proc, log, started, 3)
        assert sorted(a["id"] for a in state["agents"]) == first_ids
        left = {p: n for p, n in process_names(orphans).items() if alive(p)}
        assert not left, f"the killed demo's processes are still running: {left}"
        assert "a previous demo left running" in log.read_text()
        _stop_and_check(proc, log)
    finally:
        _cleanup(proc)
        for pid in orphans:  # bounded cleanup if the assertion above failed
            if alive(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
