"""Progressive rollouts end to end, with real parts only: `ctrltower server` (its metrics process
scraping the agents, its rollout controller), `ctrltower reconcile` on a real Git repo, three
`ctrltower agent` processes with the real collector tailing log files, and demo/sink.py as the OTLP
backend (a second sink answers 503). Short durations; one fleet for the four proofs of issue 12:

1. a good commit goes canary group -> 50 % -> 100 % and succeeds, and
4. a server restart in the middle of it (SIGKILL, same data dir) resumes it;
2. a commit whose exporter points at the 503 sink stops at the canary step and is rolled back:
   the edge agents never receive it, the canary runs the previous config again, the evidence shows
   the send-failure ratio, and the commit is never published again;
3. a commit that drops most logs (a filter) is rolled back by the throughput check against the old
   revision's agents;
5. a commit that puts a memory_limiter with a 1 MiB limit in front of the exporter makes the canary's
   filelog receiver refuse what it reads (otelcol-contrib 0.135 counts it in
   otelcol_receiver_refused_log_records_total, measured): the agent exports it as
   outcome="refused", the metrics store has it in its `refused` column, and the refused_ratio check
   rolls the commit back.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from ctrltower.cli import cli
from demo.sink import SinkHandle, start_sink
from schemas.api import AgentView, RolloutView
from tests.agent.helpers import wait_until
from tests.reconciler.gitutil import git, init_repo
from tests.support.agent import AgentProcess
from tests.support.server import ServerProcess, auth

GROUP = """kind: AgentGroup
name: {name}
selector: {selector}
priority: {priority}
vars: {{backend: "{backend}"}}
"""
PIPELINE = """kind: Pipeline
name: logs
groups: [canary, edge]
signals: [logs]
nodes:
  - {{id: tail, class: receiver, type: filelog,
     config: {{include: ["${{env:APP_LOG_DIR}}/*.log"], start_at: end, poll_interval: 100ms{operators}}}}}
  - {{id: batch, class: processor, type: batch, config: {{timeout: {timeout}}}}}
  - {{id: ship, class: exporter, type: otlphttp,
     config: {{endpoint: "{{{{ vars.backend }}}}",
              retry_on_failure: {{enabled: false}}}}}}
edges:
  - {{from: tail, to: batch}}
  - {{from: batch, to: ship}}
"""
# A filter that drops the "noise" lines: nine in ten of what the log writer writes. (Exports are not
# retried: a failed export counts as failed at once, so short analysis windows see it.)
DROP_NOISE = ", operators: [{type: filter, expr: 'body matches \"^noise\"'}]"
# A memory limiter far below what any collector uses: it refuses everything once it has measured.
TINY_LIMIT = """  - {id: limit, class: processor, type: memory_limiter,
     config: {check_interval: 100ms, limit_mib: 1, spike_limit_mib: 0}}
"""
POLICY = """kind: RolloutPolicy
name: edge
groups: [canary, edge]
steps:
  - group: canary
  - analysis: {duration: 6s}
  - weight: 50
  - analysis: {duration: 6s}
  - weight: 100
  - analysis: {duration: 6s}
analysis:
  interval: 1500ms
  min_agents: 1
  failure_limit: 1
  on_inconclusive: pause
  checks:
    - {metric: send_failure_ratio, max: 0.2}
    - {metric: refused_ratio, max: 0.2}
    - {metric: apply_failed_agents, max: 0}
    - {metric: collector_restarts, max: 0}
    - {metric: throughput, signal: logs, vs_baseline: {min_ratio: 0.4}}
on_failure: rollback
"""


class Fleet:
    def __init__(
        self, tmp: Path, srv: ServerProcess, good: SinkHandle, bad: SinkHandle, collector: Path
    ) -> None:
        self.tmp, self.srv, self.good, self.bad, self.collector = tmp, srv, good, bad, collector
        self.repo = init_repo(tmp / "cfg", from_dir=None)
        self.reconciler = srv.create_token("reconciler")
        self.operator = srv.create_token("operator")
        self.agents: dict[str, AgentProcess] = {}
        self.logs: list[Path] = []
        self._stop = threading.Event()
        self._writer = threading.Thread(target=self._write_logs, daemon=True)

    # --- the config repo -------------------------------------------------------------------------

    def commit(
        self,
        message: str,
        *,
        backend: str | None = None,
        operators: str = "",
        timeout: str = "100ms",
        limiter: bool = False,
    ) -> str:
        backend = backend or self.good.endpoint
        for name, selector, priority in (("canary", "{ring: canary}", 20), ("edge", "{tier: edge}", 10)):
            path = self.repo / "groups" / f"{name}.yaml"
            path.parent.mkdir(exist_ok=True)
            path.write_text(GROUP.format(name=name, selector=selector, priority=priority, backend=backend))
        (self.repo / "pipelines").mkdir(exist_ok=True)
        text = PIPELINE.format(operators=operators, timeout=timeout)
        if limiter:  # tail -> limit -> batch
            text = text.replace("  - {id: batch,", TINY_LIMIT + "  - {id: batch,")
            text = text.replace(
                "{from: tail, to: batch}", "{from: tail, to: limit}\n  - {from: limit, to: batch}"
            )
        (self.repo / "pipelines" / "logs.yaml").write_text(text)
        (self.repo / "rollouts").mkdir(exist_ok=True)
        (self.repo / "rollouts" / "edge.yaml").write_text(POLICY)
        git(self.repo, "add", "-A")
        git(self.repo, "commit", "-q", "--allow-empty", "-m", message)
        return git(self.repo, "rev-parse", "HEAD")

    def reconcile(self) -> dict[str, Any]:
        args = ["reconcile", "--source", str(self.repo), "--server", self.srv.base_url]
        args += ["--cache-dir", str(self.tmp / "cache"), "--format", "json"]
        result = CliRunner().invoke(
            cli, args, env={"CTRLTOWER_TOKEN": self.reconciler}, catch_exceptions=False
        )
        assert result.exit_code == 0, result.output
        return dict(json.loads(result.output))

    # --- agents and their logs -------------------------------------------------------------------

    def start_agent(self, name: str, labels: str) -> None:
        home = self.tmp / "agents" / name
        (home / "logs").mkdir(parents=True)
        self.logs.append(home / "logs" / "app.log")
        self.agents[name] = AgentProcess(
            self.srv.base_url,
            self.srv.enroll_token,
            self.collector,
            home,
            labels=labels,
            collector_env={"APP_LOG_DIR": str(home / "logs")},
        ).start()

    def _write_logs(self) -> None:
        n = 0
        while not self._stop.wait(0.05):  # ~20 lines/s per agent, until the test ends
            for path in self.logs:
                with path.open("a") as f:
                    f.write(f"{'keep' if n % 10 == 0 else 'noise'} line {n}\n")
            n += 1

    def stop(self) -> None:
        self._stop.set()
        for agent in self.agents.values():
            agent.stop()

    # --- what the server says ----------------------------------------------------------------------

    def get(self, path: str, **params: Any) -> Any:
        r = httpx.get(f"{self.srv.base_url}{path}", params=params, headers=auth(self.operator), timeout=10)
        assert r.status_code == 200, r.text
        return r.json()

    def views(self) -> dict[str, AgentView]:
        items = [AgentView.model_validate(a) for a in self.get("/api/v1/agents", limit=10)["items"]]
        return {a.id: a for a in items}  # (every agent here has this machine's hostname)

    def rollout(self, commit: str) -> RolloutView:
        items = [RolloutView.model_validate(r) for r in self.get("/api/v1/rollouts", limit=20)["items"]]
        return next(r for r in items if r.commit_sha == commit)

    def wait_rollout(self, commit: str, states: tuple[str, ...], timeout: float = 90) -> RolloutView:
        def done() -> RolloutView | None:  # None until the rollout is there and in one of `states`
            try:
                r = self.rollout(commit)
            except (StopIteration, httpx.HTTPError):
                return None
            assert r.state not in ("paused", "superseded", "aborted") or r.state in states, (
                r.model_dump_json()
            )
            return r if r.state in states else None

        found = wait_until(done, timeout, interval=0.3, what=f"rollout of {commit[:12]} to reach {states}")
        assert found is not None
        return found

    def wait_synced(self, revision: str, ids: list[str] | None = None, timeout: float = 60) -> None:
        def synced() -> bool:
            views = self.views()
            wanted = ids or list(views)
            return len(views) == len(self.agents) and all(
                i in views and views[i].sync_status == "Synced" and views[i].effective_revision == revision
                for i in wanted
            )

        wait_until(synced, timeout, interval=0.3, what=f"{ids or 'every agent'} Synced on {revision[:12]}")

    def applied_revisions(self, agent_id: str) -> set[str]:
        events = self.get(f"/api/v1/agents/{agent_id}/events", kind="applied", limit=1000)["items"]
        return {e["revision"] for e in events}


@contextmanager
def fleet(tmp: Path, collector: Path) -> Iterator[Fleet]:
    with ExitStack() as stack:
        good = stack.enter_context(start_sink("127.0.0.1", 0))
        bad = stack.enter_context(start_sink("127.0.0.1", 0))
        bad.set_failing(503)
        srv = stack.enter_context(
            ServerProcess(
                tmp / "server",
                poll_interval_s=0.5,
                metrics=True,
                metrics_interval_s=0.5,
                extra_args=("--rollout-tick", "0.3"),
            )
        )
        f = Fleet(tmp, srv, good, bad, collector)
        try:
            yield f
        finally:
            f.stop()


@pytest.mark.timeout(900)  # four proofs and a refused one, one after the other, on a loaded machine
def test_rollouts_with_real_agents_collectors_and_sinks(tmp_path: Path, collector_bin: Path) -> None:
    with fleet(tmp_path, collector_bin) as f:
        first = f.commit("initial")
        assert f.reconcile()["outcome"] == "published"  # nothing to roll out from: published at once
        f.start_agent("canary-1", "tier=edge,ring=canary")
        f.start_agent("edge-1", "tier=edge")
        f.start_agent("edge-2", "tier=edge")
        f._writer.start()
        f.wait_synced(first)
        canary = [i for i, v in f.views().items() if v.labels.get("ring") == "canary"]
        edge = [i for i, v in f.views().items() if i not in canary]
        assert len(canary) == 1 and len(edge) == 2
        wait_until(lambda: f.good.counts().get("logs", 0) > 100, 60, what="logs at the good sink")

        # (1) + (4): a good commit goes canary -> 50 % -> 100 %; the server restarts in the middle
        good = f.commit("longer batch timeout", timeout="200ms")
        assert f.reconcile()["outcome"] == "published"
        r = f.wait_rollout(good, ("progressing",))
        assert r.bases == {"canary": first, "edge": first}
        f.wait_synced(good, canary)
        wait_until(lambda: f.rollout(good).step >= 3, 90, interval=0.3, what="the 50 % step")
        f.srv.kill()  # SIGKILL: no goodbye, the lease is left to expire
        f.srv.start()
        done = f.wait_rollout(good, ("succeeded",), timeout=120)
        assert [s.status for s in done.steps] == ["done"] * 6
        assert any(m.verdict == "pass" and m.step == 5 for m in done.measurements)  # judged after restart
        f.wait_synced(good)

        # (2): every group's exporter at a sink answering 503: stopped at the canary, rolled back
        broken = f.commit("ship to the new backend", backend=f.bad.endpoint, timeout="200ms")
        assert f.reconcile()["outcome"] == "published"
        back = f.wait_rollout(broken, ("rolled_back",))
        assert back.step == 1 and back.reason is not None and "send_failure_ratio" in back.reason, back.reason
        evidence = [c for m in back.measurements for c in m.checks if c.metric == "send_failure_ratio"]
        assert any(c.verdict == "fail" and c.value is not None and c.value > 0.2 for c in evidence)
        assert f.bad.counts().get("logs", 0) == 0  # the 503 sink never accepted anything
        f.wait_synced(good)  # the canary runs the previous config again
        assert broken in f.applied_revisions(canary[0])
        for agent_id in edge:
            assert broken not in f.applied_revisions(agent_id), f"{agent_id} received the broken commit"
        # the reconciler does not publish it again; a later commit would start a new rollout
        assert f.reconcile()["outcome"] == "unchanged"
        audit = f.get("/api/v1/audit", action="rollout.rollback")["items"]
        assert audit and audit[0]["actor"] == "rollout-controller"

        # (3): a filter that drops nine log lines in ten: the throughput check rolls it back
        dropped = f.commit("drop the noise", operators=DROP_NOISE, timeout="200ms")
        assert f.reconcile()["outcome"] == "published"
        assert f.rollout(dropped).bases == {"canary": good, "edge": good}  # from what agents run
        back = f.wait_rollout(dropped, ("rolled_back",))
        assert back.reason is not None and "throughput" in back.reason, back.reason
        ratios = [c for m in back.measurements for c in m.checks if c.metric == "throughput" and c.value]
        assert any(c.verdict == "fail" and (c.value or 0) < 0.4 and c.baseline for c in ratios)
        f.wait_synced(good)

        # (5): a memory limiter that refuses everything: the refused_ratio check rolls it back
        refusing = f.commit("limit memory to 1 MiB", limiter=True, timeout="200ms")
        assert f.reconcile()["outcome"] == "published"
        back = f.wait_rollout(refusing, ("rolled_back",))
        assert back.reason is not None and "refused_ratio" in back.reason, back.reason
        refused = [c for m in back.measurements for c in m.checks if c.metric == "refused_ratio"]
        assert any(c.verdict == "fail" and (c.value or 0) > 0.2 for c in refused), refused
        # the refused records reached the metrics store: the canary's `refused` rate over the rollout
        series = f.get(
            "/api/v1/metrics/query", agent=canary[0], metric="refused", start="-10m", end="now", step="5s"
        )
        assert any(v for _, v in series["points"]), series["points"]
        f.wait_synced(good)
        for agent_id in edge:
            assert refusing not in f.applied_revisions(agent_id)

        # the CLI sees the same, and an action on the finished rollout is a conflict (exit 6)
        env = {"CTRLTOWER_TOKEN": f.operator}
        out = CliRunner().invoke(
            cli, ["rollout", "status", str(back.id), "--server", f.srv.base_url], env=env
        )
        assert out.exit_code == 0 and "rolled_back" in out.output and "throughput=" in out.output
        out = CliRunner().invoke(
            cli, ["rollout", "promote", str(back.id), "--server", f.srv.base_url], env=env
        )
        assert out.exit_code == 6 and "rollout_finished" in out.output
