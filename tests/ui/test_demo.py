"""`make demo` for real: `python -m demo.run` as a subprocess with the real server, reconciler,
agents and collectors; wait (bounded) until the API shows every agent Synced with non-zero log
rates and the fleet page shows them; then until the rollout the demo starts by itself (its commit
to its own config repo, rolled out by the example policy, here with shorter analysis steps) has gone
through every step and succeeded, as the API, the demo's output and the Rollouts page say; then
SIGINT and check that every process it started is gone.
A second run on the same data directory works and reuses the same agent identities; after a
SIGKILL of the demo, the next run stops the orphaned processes and works."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import httpx
import pytest

from demo.rollout import ensure_config_repo, git
from tests.conftest import ROOT, free_port
from tests.support.procs import alive, descendants
from tests.support.ready import patience
from tests.ui.demo_support import process_names, ui_login

# the demo runs three times and its rollout goes through every step: well past the default 300 s cap
pytestmark = [pytest.mark.slow, pytest.mark.collector, pytest.mark.timeout(1800)]
READY_TIMEOUT_S = patience(90.0)  # a bound on the fleet becoming ready, scaled for load
ROLLOUT_TIMEOUT_S = patience(100.0)  # three 24 s analysis steps and the moves between them, loaded


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


def _shorten_policy(data_dir: Path) -> Path:
    """Make the demo's config repo the way the demo does, then commit shorter analysis steps to its
    policy (the example's 2m/2m/1m would make this test last over five minutes). The throughput
    bound is lowered because a loaded machine can hold back one collector's batches for seconds."""
    repo = ensure_config_repo(data_dir)
    policy = repo / "rollouts" / "edge.yaml"
    text = policy.read_text()
    short = re.sub(r"duration: \d+m", "duration: 24s", text).replace("interval: 20s", "interval: 8s")
    short = short.replace("min_ratio: 0.5", "min_ratio: 0.3")
    assert short.count("24s") == 3 and "interval: 8s" in short, short
    policy.write_text(short)
    git(repo, "commit", "-q", "-am", "test: shorter analysis steps")
    return repo


def _wait_rollout(base: str, token: str, repo: Path, proc: subprocess.Popen[bytes], log: Path) -> dict:
    """The rollout of the commit the demo made to its config repo, once it has finished (bounded)."""
    deadline = time.monotonic() + ROLLOUT_TIMEOUT_S
    headers = {"Authorization": f"Bearer {token}"}
    last: object = None
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"demo exited early ({proc.returncode}):\n{log.read_text()}"
        head, subject = git(repo, "log", "-1", "--format=%H %s").split(" ", 1)
        if subject.startswith("demo: batch timeout"):
            try:
                items = httpx.get(f"{base}/api/v1/rollouts", headers=headers, timeout=5).json()["items"]
            except (httpx.HTTPError, ValueError, KeyError):
                items = []
            found = [r for r in items if r["commit_sha"] == head]
            if found:
                last = {k: found[0][k] for k in ("id", "state", "step", "reason")}
                if found[0]["state"] in ("succeeded", "rolled_back", "aborted", "superseded", "paused"):
                    return dict(found[0])
        time.sleep(1.0)
    pytest.fail(f"no finished demo rollout in {ROLLOUT_TIMEOUT_S}s; last {last}\n{log.read_text()[-3000:]}")


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
    repo = _shorten_policy(data_dir)
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
        # the fleet page itself shows them synced with non-zero log rates (the demo's rollout may
        # have just moved an agent: it is Pending until it applies its new revision, so ask again)
        ui = ui_login(base, token)
        try:
            deadline = time.monotonic() + READY_TIMEOUT_S
            page = ui.get("/").text
            while page.count('data-sync="Synced"') != 3 and time.monotonic() < deadline:
                time.sleep(0.5)
                page = ui.get("/").text
        finally:
            ui.close()
        assert page.count('data-sync="Synced"') == 3
        rates = [line for line in page.splitlines() if 'data-metric="logs_in"' in line]
        assert len(rates) == 3 and all("—" not in r for r in rates), rates

        # the demo commits a change by itself and the example policy rolls it out to the end
        rollout = _wait_rollout(base, token, repo, proc, log)
        assert rollout["state"] == "succeeded", rollout
        assert [s["status"] for s in rollout["steps"]] == ["done"] * 6, rollout["steps"]
        detail = httpx.get(
            f"{base}/api/v1/rollouts/{rollout['id']}", headers={"Authorization": f"Bearer {token}"}
        ).json()
        assert detail["agents"] == {"edge": {"new": 2, "old": 0}, "edge-canary": {"new": 1, "old": 0}}
        verdicts = {c["verdict"] for m in detail["measurements"] for c in m["checks"]}
        assert "pass" in verdicts, detail["measurements"]  # (one failed measurement is allowed)
        # the demo says so (its watcher asks every 2 s: wait for its line, bounded)
        said = f"rollout {rollout['id']} (edge, {rollout['commit_sha'][:8]}): succeeded"
        deadline = time.monotonic() + READY_TIMEOUT_S
        while said not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.5)
        output = log.read_text()
        assert said in output, output[-3000:]
        assert f"{base}/rollouts?id={rollout['id']}" in output, output[-3000:]
        ui = ui_login(base, token)
        try:
            page = ui.get("/rollouts", params={"id": rollout["id"]}).text
        finally:
            ui.close()
        assert "succeeded" in page and "edge-canary" in page
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
