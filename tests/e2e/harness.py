"""The whole system for end-to-end tests: a config repo in Git, the real reconciler (`ctrltower
reconcile` as a subprocess), the real server, one real agent running the real collector, the demo's
OTLP/HTTP sink (demo/sink.py) and its log generator. Nothing is faked.

The config repo starts as a copy of example-config-repo/ (without its rollout policy); the agent is
labelled `tier=edge`, so it runs the `edge` group (app-logs: filelog -> batch -> otlphttp to the sink).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx

from demo.loggen import LogGenerator
from demo.sink import SinkHandle, start_sink
from tests.conftest import ROOT
from tests.reconciler.gitutil import EXAMPLE, commit, init_repo
from tests.support.agent import AgentProcess, example_agent
from tests.support.ready import patience, wait_until
from tests.support.server import ServerProcess

T = TypeVar("T")


@dataclass
class System:
    tmp: Path
    repo: Path
    srv: ServerProcess
    sink: SinkHandle
    gen: LogGenerator
    agent: AgentProcess
    reconciler_token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.srv.admin_token}"}

    def reconcile(self) -> tuple[int, dict[str, Any]]:
        """One `ctrltower reconcile` run of the repo's main branch: (exit code, its JSON report)."""
        done = subprocess.run(
            [sys.executable, "-m", "ctrltower", "reconcile", "--source", str(self.repo), "--server",
             self.srv.base_url, "--cache-dir", str(self.tmp / "reconciler-cache"), "--format", "json"],
            cwd=ROOT, env=dict(os.environ, CTRLTOWER_TOKEN=self.reconciler_token), capture_output=True,
            text=True, timeout=patience(120),
        )  # fmt: skip
        try:
            report = json.loads(done.stdout.strip().splitlines()[-1]) if done.stdout.strip() else {}
        except json.JSONDecodeError:
            report = {"raw": done.stdout}
        report["_stderr"] = done.stderr[-3000:]
        return done.returncode, report

    def get(self, path: str, **params: Any) -> Any:
        r = httpx.get(self.srv.base_url + path, params=params, headers=self.headers, timeout=10)
        assert r.status_code == 200, f"{path}: {r.status_code} {r.text[:300]}"
        return r.json()

    def ui_page(self, path: str) -> str:
        """A UI page as a logged-in operator sees it (the login form, then the page)."""
        from tests.ui.demo_support import ui_login

        client = ui_login(self.srv.base_url, self.srv.admin_token)
        try:
            r = client.get(path)
            assert r.status_code == 200, f"{path}: {r.status_code}"
            return r.text
        finally:
            client.close()

    def agent_view(self) -> dict[str, Any]:
        items = self.get("/api/v1/agents")["items"]
        return dict(items[0]) if items else {}

    def current_revision(self) -> str | None:
        items = self.get("/api/v1/revisions", limit=1)["items"]
        return str(items[0]["commit_sha"]) if items else None

    def shipped(self) -> int:
        return self.sink.counts()["logs"]

    def agent_log(self) -> str:
        return self.agent.log_text(5000)

    def wait(self, what: str, check: Callable[[], T | None], timeout: float = 60.0) -> T:
        """Poll `check` until it returns something truthy (bounded, scaled for a loaded machine); an HTTP
        error is "not yet" (the server may be restarting)."""
        try:
            return wait_until(check, timeout, interval=0.2, what=what, ignore=(httpx.HTTPError,))
        except AssertionError as exc:
            raise AssertionError(f"{exc}\nagent: {self.agent_view()}\nlog:\n{self.agent_log()}") from None

    def logs_keep_flowing(self, what: str) -> None:
        """The sink receives lines written after this call (the collector ships, whatever happened)."""
        before = self.shipped()
        target = before + max(20, int(self.gen.rate * 2))
        self.wait(f"logs reaching the sink ({what})", lambda: self.shipped() >= target)


@contextmanager
def running_system(
    tmp: Path,
    collector_bin: Path,
    *,
    rate: float = 50.0,
    metrics: bool = False,
    metrics_interval_s: float = 1.0,
) -> Iterator[System]:
    """Repo, server, first reconcile, sink, log generator and agent; everything stopped on exit."""
    repo = init_repo(tmp / "config-repo", from_dir=None)
    # The example repo without its rollout policy: these tests follow each commit to the agent at once
    # (progressive rollouts have their own tests); a policy would hold edge back for minutes.
    shutil.copytree(EXAMPLE, repo, dirs_exist_ok=True, ignore=shutil.ignore_patterns("rollouts"))
    commit(repo, "the example fleet, published at once")
    srv = ServerProcess(
        tmp / "server", poll_interval_s=0.5, metrics=metrics, metrics_interval_s=metrics_interval_s
    )
    log_dir = tmp / "app-logs"
    log_dir.mkdir()
    gen = LogGenerator([log_dir], rate=rate)
    with srv, start_sink("127.0.0.1", 0) as sink:
        agent = example_agent(
            srv.base_url,
            srv.enroll_token,
            collector_bin,
            tmp,
            zone="e2e",
            log_dir=log_dir,
            endpoint=sink.endpoint,
        )
        system = System(tmp, repo, srv, sink, gen, agent, srv.create_token("reconciler"))
        try:
            code, report = system.reconcile()
            assert code == 0, report
            agent.start()
            gen.start()
            yield system
        finally:
            gen.stop()
            agent.stop()
