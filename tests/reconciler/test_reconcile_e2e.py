"""End to end against the REAL server (`ctrltower server` on 127.0.0.1) and real Git repos:
commit -> reconcile -> the agent endpoint serves the new config; a bad commit -> the old config is
still served and the run is reported failed; a revert -> a new revision; no-op, conflicts, lock,
missing ref, bad token, the loop, and `status`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from compiler.api import compile_repo
from ctrltower import exit_codes
from ctrltower.cli import cli
from reconciler.client import ControlClient, make_http_client
from reconciler.errors import RevisionConflict
from reconciler.git import GitRepo
from reconciler.lock import RunLock
from reconciler.run import ReconcileSettings, reconcile_once
from schemas.api import HEADER_REVISION, RevisionPublish, RevisionSummary
from tests.conftest import ROOT
from tests.reconciler.gitutil import commit, edit, git, head, init_repo
from tests.support.server import ServerProcess, auth

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with ServerProcess(tmp_path_factory.mktemp("srv") / "data", poll_interval_s=0.5) as srv:
        yield srv


@pytest.fixture(scope="module")
def token(server: ServerProcess) -> str:
    return server.create_token("reconciler", "test reconciler")


class Agent:
    """A fake agent speaking the real agent API over HTTP: register with the enroll token, GET config."""

    def __init__(self, server: ServerProcess, labels: dict[str, str], instance: str) -> None:
        self.http = server.client()
        r = self.http.post(
            "/api/agent/v1/agents",
            json={"instance_id": instance, "hostname": instance, "labels": labels},
            headers=auth(server.enroll_token),
        )
        assert r.status_code == 200, r.text
        self.id, self.token = r.json()["agent_id"], r.json()["agent_token"]

    def close(self) -> None:
        self.http.close()

    def config(self) -> httpx.Response:
        return self.http.get(f"/api/agent/v1/agents/{self.id}/config", headers=auth(self.token))


@pytest.fixture
def make_agent(server: ServerProcess) -> Iterator[Any]:
    made: list[Agent] = []

    def make(labels: dict[str, str], instance: str) -> Agent:
        made.append(Agent(server, labels, instance))
        return made[-1]

    yield make
    for agent in made:
        agent.close()


def run_cli(*args: str, token: str) -> Any:
    return CliRunner().invoke(cli, list(args), env={"CTRLTOWER_TOKEN": token}, catch_exceptions=False)


def runs(server: ServerProcess) -> list[dict[str, Any]]:
    with server.client(server.admin_token) as c:
        return list(c.get("/api/v1/reconcile-runs", params={"limit": 100}).json()["items"])


def rendered(repo: Path, group: str) -> str:
    with GitRepo.open(repo) as r:
        return compile_repo(r.read_files(r.resolve("HEAD"))).configs[group]


def test_commit_reconcile_serve_bad_commit_revert(
    server: ServerProcess, token: str, tmp_path: Path, make_agent: Any
) -> None:
    repo = init_repo(tmp_path / "cfg", rollouts=False)
    cache = tmp_path / "cache"
    agent = make_agent({"tier": "edge"}, "edge-host-0001")
    assert agent.config().json()["error"]["code"] == "no_revision"
    args = ["reconcile", "--source", str(repo), "--server", server.base_url, "--cache-dir", str(cache)]

    # first commit -> published -> served byte for byte
    result = run_cli(*args, token=token)
    assert result.exit_code == 0, result.output
    first = head(repo)
    r = agent.config()
    assert r.status_code == 200
    assert r.text == rendered(repo, "edge") and r.headers[HEADER_REVISION] == first
    assert runs(server)[0]["outcome"] == "published" and runs(server)[0]["commit_sha"] == first

    # the same commit again: a fast no-op, nothing compiled
    result = run_cli(*args, "--format", "json", token=token)
    assert result.exit_code == 0, result.output
    assert '"outcome": "unchanged"' in result.output and '"compile"' not in result.output
    assert runs(server)[0]["outcome"] == "unchanged"

    # a change -> a new revision served
    edit(repo, "groups/edge.yaml", "batch_timeout: 2s", "batch_timeout: 3s")
    second = commit(repo, "edge: 3s batches")
    assert run_cli(*args, token=token).exit_code == 0
    r = agent.config()
    assert r.headers[HEADER_REVISION] == second and "timeout: 3s" in r.text
    good_config = r.text

    # a bad commit -> nothing published, the old config still served, the run reported failed
    edit(repo, "pipelines/app-logs.yaml", "type: batch", "type: no-such-processor")
    bad = commit(repo, "typo")
    result = run_cli(*args, token=token)
    assert result.exit_code == exit_codes.FINDINGS
    assert "pipelines/app-logs.yaml:" in result.output and "nothing published" in result.output
    r = agent.config()
    assert r.headers[HEADER_REVISION] == second and r.text == good_config
    last = runs(server)[0]
    assert last["outcome"] == "invalid" and last["commit_sha"] == bad
    assert any(d["location"]["file"] == "pipelines/app-logs.yaml" for d in last["diagnostics"])
    assert {"fetch", "compile", "total"} <= set(last["timings_s"])

    # the revert -> a new revision (a new commit), the good config again
    git(repo, "revert", "--no-edit", "HEAD")
    reverted = head(repo)
    assert run_cli(*args, token=token).exit_code == 0
    r = agent.config()
    assert r.headers[HEADER_REVISION] == reverted and r.text == good_config

    # status: what an SRE checks first
    result = run_cli("status", "--server", server.base_url, token=token)
    assert result.exit_code == 0, result.output
    assert f"applied:   {reverted[:12]}" in result.output
    assert f"attempted: {reverted[:12]} published" in result.output
    # the fake agent never reported a status: OutOfSync (online or, on a slow machine, offline)
    assert "agents:    1 total; sync: OutOfSync 1; status: " in result.output


def test_subprocess_exit_codes_and_no_secret_in_output(
    server: ServerProcess, token: str, tmp_path: Path
) -> None:
    repo = init_repo(tmp_path / "cfg", rollouts=False)
    cache = tmp_path / "cache"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CTRLTOWER_")}

    def run(*args: str, tok: str | None = token) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "ctrltower", *args],
            cwd=ROOT,
            env={**env, **({"CTRLTOWER_TOKEN": tok} if tok else {})},
            capture_output=True,
            text=True,
            timeout=120,
        )

    common = ["--server", server.base_url, "--cache-dir", str(cache)]
    missing = run("reconcile", "--source", str(repo), "--ref", "no-such-branch", *common)
    assert missing.returncode == exit_codes.GIT_ERROR, missing.stderr
    assert "ref 'no-such-branch' not found" in missing.stderr and "Traceback" not in missing.stderr
    assert runs(server)[0]["outcome"] == "error"

    refused = run("reconcile", "--source", str(repo), *common, tok="not-a-token")
    assert refused.returncode == exit_codes.SERVER_ERROR and "401" in refused.stderr

    url_with_secret = "file://user:s3cr3t-pw@" + str(
        repo
    )  # file:// ignores userinfo? it must still be hidden
    hidden = run("reconcile", "--source", url_with_secret, "--ref", "nope", *common)
    assert "s3cr3t-pw" not in hidden.stdout + hidden.stderr
    assert all("s3cr3t-pw" not in (r["source"] + (r["error"] or "")) for r in runs(server))

    no_token = run("status", "--server", server.base_url, tok=None)
    assert no_token.returncode == exit_codes.USAGE and "CTRLTOWER_TOKEN" in no_token.stderr

    down = run("status", "--server", "http://127.0.0.1:9")
    assert down.returncode == exit_codes.SERVER_ERROR and "cannot reach the server" in down.stderr

    lock = RunLock(cache / "locks" / f"{_key(repo)}.lock")
    with lock:
        held = run("reconcile", "--source", str(repo), *common)
    assert held.returncode == exit_codes.CONFLICT
    assert "another reconcile of this source is running" in held.stderr


def _key(repo: Path) -> str:
    from reconciler.git import Source

    return Source.parse(str(repo)).cache_key


class RacingClient(ControlClient):
    """Another reconciler publishes between our read of the current revision and our publish."""

    def __init__(self, http: httpx.Client, rival: RevisionPublish) -> None:
        super().__init__(http)
        self.rival = rival

    def current_revision(self) -> RevisionSummary | None:
        current = super().current_revision()
        self.publish(
            self.rival.model_copy(update={"previous_commit_sha": current.commit_sha if current else None})
        )
        return current


def test_compare_and_set_loser_reports_conflict(server: ServerProcess, token: str, tmp_path: Path) -> None:
    repo = init_repo(tmp_path / "cfg", rollouts=False)
    settings = ReconcileSettings(source=str(repo), ref="main", cache_dir=tmp_path / "cache")
    with ControlClient(make_http_client(server.base_url, token)) as client:
        current = client.current_revision()
        with pytest.raises(RevisionConflict, match="409 revision_conflict"):
            client.publish(
                RevisionPublish(commit_sha="f" * 40, previous_commit_sha="e" * 40, groups=[], pipelines=[])
            )
    with GitRepo.open(repo) as r:
        files = r.read_files(head(repo))
    compiled = compile_repo(files)
    rival = RevisionPublish(
        commit_sha="abcdef1234567" + "0" * 27,
        previous_commit_sha=None,
        groups=compiled.groups,
        pipelines=compiled.pipelines,
    )
    del current
    with RacingClient(make_http_client(server.base_url, token), rival) as racing:
        result = reconcile_once(settings, racing, environ={})
    assert result.outcome == "conflict" and result.reported
    assert "revision_conflict" in str(result.error)
    with ControlClient(make_http_client(server.base_url, token)) as client:
        now = client.current_revision()
    assert now is not None and now.commit_sha == rival.commit_sha  # the winner's revision stands


def test_loop_runs_with_interval_and_stops(server: ServerProcess, token: str, tmp_path: Path) -> None:
    repo = init_repo(tmp_path / "cfg", rollouts=False)
    before = len(runs(server))
    result = run_cli(
        "reconcile",
        "--source", str(repo),
        "--server", server.base_url,
        "--cache-dir", str(tmp_path / "cache"),
        "--interval", "100ms",
        "--max-runs", "3",
        token=token,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert result.output.count("reconcile ") == 3
    assert len(runs(server)) == before + 3


def test_loop_stops_on_a_permanent_error(server: ServerProcess, token: str, tmp_path: Path) -> None:
    repo = init_repo(tmp_path / "cfg", rollouts=False)
    result = run_cli(
        "reconcile",
        "--source", str(repo),
        "--ref", "gone",
        "--server", server.base_url,
        "--cache-dir", str(tmp_path / "cache"),
        "--interval", "50ms",
        "--max-runs", "5",
        token=token,
    )  # fmt: skip
    assert result.exit_code == exit_codes.GIT_ERROR
    assert result.output.count("ref 'gone' not found") == 1  # one run, then the loop gave up


def test_plan_with_live_agent_counts(
    server: ServerProcess, token: str, tmp_path: Path, make_agent: Any
) -> None:
    repo = init_repo(tmp_path / "cfg", rollouts=False)
    for i in range(2):
        make_agent({"tier": "gateway"}, f"gw-host-{i:04d}")
    assert run_cli("reconcile", "--source", str(repo), "--server", server.base_url,
                   "--cache-dir", str(tmp_path / "cache"), token=token).exit_code == 0  # fmt: skip
    edit(
        repo,
        "pipelines/gateway-traces.yaml",
        "kind: Pipeline",
        "kind: Pipeline\n# a comment: renders the same",
    )
    commit(repo, "comment only")
    result = run_cli("plan", "--repo", str(repo), "--base", "HEAD~1", "--server", server.base_url,
                     "--format", "json", token=token)  # fmt: skip
    assert result.exit_code == 0, result.output
    (change,) = json.loads(result.output)["changes"]
    assert change["group"] == "gateway" and change["kind"] == "no-op" and change["agents"] == 2


def test_loop_stops_cleanly_on_sigterm(server: ServerProcess, token: str, tmp_path: Path) -> None:
    repo = init_repo(tmp_path / "cfg", rollouts=False)
    env = {**os.environ, "CTRLTOWER_TOKEN": token}
    args = [
        "reconcile",
        "--source",
        str(repo),
        "--server",
        server.base_url,
        "--cache-dir",
        str(tmp_path / "c"),
    ]
    proc = subprocess.Popen(
        [sys.executable, "-m", "ctrltower", *args, "--interval", "1h"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()  # the first run is done when its line is printed
        assert "reconcile " in first, first
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0  # stops during the wait, not after an hour
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()  # type: ignore[union-attr]
        proc.stderr.close()  # type: ignore[union-attr]


def test_deleted_database_next_reconcile_republishes(tmp_path: Path) -> None:
    """docs/reconciler.md: delete the server's SQLite file, agents re-register, the next reconcile
    republishes (Git is the source of truth)."""
    repo = init_repo(tmp_path / "cfg", rollouts=False)
    with ServerProcess(tmp_path / "srv" / "data", poll_interval_s=0.5) as srv:
        args = [
            "reconcile",
            "--source",
            str(repo),
            "--server",
            srv.base_url,
            "--cache-dir",
            str(tmp_path / "c"),
        ]
        assert run_cli(*args, token=srv.create_token("reconciler")).exit_code == 0
        agent = Agent(srv, {"tier": "edge"}, "edge-host-0042")
        before = agent.config()
        agent.close()
        assert before.status_code == 200
        srv.stop()
        for suffix in ("", "-wal", "-shm"):
            (srv.data_dir / f"state.db{suffix}").unlink(missing_ok=True)
        srv.start()
        agent = Agent(srv, {"tier": "edge"}, "edge-host-0042")  # re-registers with the enroll token
        try:
            assert agent.config().json()["error"]["code"] == "no_revision"
            result = run_cli(*args, "--format", "json", token=srv.create_token("reconciler"))
            assert result.exit_code == 0 and '"outcome": "published"' in result.output
            after = agent.config()
            assert after.status_code == 200 and after.text == before.text
            assert after.headers[HEADER_REVISION] == head(repo)
        finally:
            agent.close()
