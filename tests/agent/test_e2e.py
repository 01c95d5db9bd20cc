"""End to end: the real server, `ctrltower agent` as a subprocess on a host where the server's
dependencies cannot be imported, the real collector tailing log files and shipping with otlphttp to
demo/sink.py. Revisions are published the way the reconciler does (POST /api/v1/revisions)."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from demo.sink import SinkHandle, start_sink
from schemas.api import AgentView, GroupRevision, RevisionPublish
from schemas.common import config_hash
from tests.agent.helpers import collector_config, wait_until, write_lines
from tests.support.agent import AgentProcess
from tests.support.procs import alive
from tests.support.server import ServerProcess, auth

pytestmark = [pytest.mark.collector, pytest.mark.slow]


@dataclass
class Fleet:
    """One server, one agent subprocess, one sink, and helpers to drive them."""

    tmp: Path
    srv: ServerProcess
    sink: SinkHandle
    collector_bin: Path
    reconciler: str = ""
    operator: str = ""
    head: str | None = None
    agent: AgentProcess | None = None
    n_publish: int = 0

    @property
    def config_path(self) -> Path:
        return self.tmp / "etc" / "collector.yaml"

    def publish(self, yaml_text: str, selector: dict[str, str] | None = None) -> str:
        self.n_publish += 1
        sha = f"{self.n_publish:07x}abcdef"
        body = RevisionPublish(
            commit_sha=sha,
            previous_commit_sha=self.head,
            message=f"revision {self.n_publish}",
            groups=[
                GroupRevision(
                    name="edge",
                    selector=selector if selector is not None else {"role": "edge"},
                    priority=0,
                    config=yaml_text,
                    config_hash=config_hash(yaml_text),
                )
            ],
            pipelines=[],
        )
        r = httpx.post(
            f"{self.srv.base_url}/api/v1/revisions",
            content=body.model_dump_json(by_alias=True),
            headers={**auth(self.reconciler), "Content-Type": "application/json"},
            timeout=10,
        )
        assert r.status_code in (200, 201), r.text
        self.head = sha
        return sha

    def start_agent(self, labels: str = "role=edge,zone=test") -> AgentProcess:
        """A new agent process on the same files (a restart keeps its state dir and log)."""
        self.agent = AgentProcess(
            self.srv.base_url,
            self.srv.enroll_token,
            self.collector_bin,
            self.tmp,
            config=self.config_path,
            labels=labels,
            health_timeout="5s",
        ).start()
        return self.agent

    def agent_log(self) -> str:
        return self.agent.log_text(6000) if self.agent is not None else ""

    def view(self) -> AgentView | None:
        r = httpx.get(f"{self.srv.base_url}/api/v1/agents", headers=auth(self.operator), timeout=10)
        items = r.json()["items"] if r.status_code == 200 else []
        return AgentView.model_validate(items[0]) if items else None

    def wait_view(self, what: str, timeout: float = 20, **expected: Any) -> AgentView:
        def check() -> AgentView | None:
            v = self.view()
            return v if v is not None and all(getattr(v, k) == val for k, val in expected.items()) else None

        try:
            return wait_until(check, timeout, interval=0.2, what=what)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\nlast view: {self.view()}\nagent log:\n{self.agent_log()}") from None

    def collector_pid(self) -> int | None:
        assert self.agent is not None
        return self.agent.collector_pid()

    def command(self, agent_id: str, action: str) -> int:
        r = httpx.post(
            f"{self.srv.base_url}/api/v1/agents/{agent_id}/commands",
            json={"action": action},
            headers=auth(self.operator),
            timeout=10,
        )
        assert r.status_code in (200, 201, 202), r.text
        return int(r.json()["id"])

    def command_state(self, agent_id: str, command_id: int) -> str | None:
        r = httpx.get(
            f"{self.srv.base_url}/api/v1/agents/{agent_id}/commands", headers=auth(self.operator), timeout=10
        )
        data = r.json()
        items = data["items"] if isinstance(data, dict) else data
        return next((c["state"] for c in items if c["id"] == command_id), None)

    def agent_metric(self, line_prefix: str) -> float | None:
        assert self.agent is not None
        return self.agent.metric(line_prefix)


@pytest.fixture
def fleet(tmp_path: Path, collector_bin: Path) -> Iterator[Fleet]:
    with start_sink("127.0.0.1", 0) as sink, ServerProcess(tmp_path / "server", poll_interval_s=0.5) as srv:
        f = Fleet(tmp_path, srv, sink, collector_bin)
        f.reconciler = srv.create_token("reconciler")
        f.operator = srv.create_token("operator")
        try:
            yield f
        finally:
            if f.agent is not None:
                f.agent.stop()


def test_revisions_reach_the_collector_and_bad_ones_never_stop_it(fleet: Fleet) -> None:
    logs_a, logs_b = fleet.tmp / "a", fleet.tmp / "b"
    logs_a.mkdir()
    logs_b.mkdir()
    rev1 = fleet.publish(collector_config(f"{logs_a}/*.log", fleet.sink.endpoint))
    fleet.start_agent()
    view = fleet.wait_view(
        "agent synced on rev1", sync_status="Synced", run_state="running", effective_revision=rev1
    )
    assert view.labels == {"role": "edge", "zone": "test"} and view.group == "edge"
    assert fleet.config_path.read_text() == collector_config(f"{logs_a}/*.log", fleet.sink.endpoint)

    # Throughput: the agent's /metrics says exactly the lines written, in and out.
    lines = write_lines(logs_a / "app.log", "a-line", 123)
    assert fleet.sink.wait_for("logs", 123, timeout=15) == 123
    assert fleet.sink.bodies() == lines
    prefix = "ctrltower_collector_items_total"
    wait_until(
        lambda: fleet.agent_metric(f'{prefix}{{outcome="sent",signal="logs"}}') == 123, 10, what="sent"
    )
    assert fleet.agent_metric(f'{prefix}{{outcome="accepted",signal="logs"}}') == 123
    assert fleet.agent_metric("ctrltower_collector_up") == 1
    assert (fleet.agent_metric('ctrltower_config_applies_total{result="applied"}') or 0) >= 1

    # A new revision changes behaviour: another include path.
    rev2 = fleet.publish(collector_config(f"{logs_b}/*.log", fleet.sink.endpoint))
    fleet.wait_view("agent synced on rev2", sync_status="Synced", effective_revision=rev2)
    write_lines(logs_b / "app.log", "b-line", 10)
    wait_until(lambda: "b-line 9" in fleet.sink.bodies(), 15, what="lines from the new include path")

    # Passes our checks, but the collector rejects it: ApplyFailed, the old config keeps shipping.
    bad_yaml = collector_config(f"{logs_a}/*.log", fleet.sink.endpoint, extra="    no_such_key: true\n")
    fleet.publish(bad_yaml)
    view = fleet.wait_view("ApplyFailed", sync_status="ApplyFailed")
    assert view.last_apply is not None and view.last_apply.config_hash == config_hash(bad_yaml)
    assert "no_such_key" in (view.last_apply.error or "")
    assert view.reported_hash == config_hash(collector_config(f"{logs_b}/*.log", fleet.sink.endpoint))
    write_lines(logs_b / "app.log", "b-after-bad", 5)
    wait_until(lambda: "b-after-bad 4" in fleet.sink.bodies(), 15, what="old config still shipping")
    assert fleet.agent_metric('ctrltower_config_applies_total{result="failed"}') == 1
    # ... and the agent does not retry that hash.
    assert fleet.agent_log().count("applying config") == 3


def test_operations_crash_drift_commands_server_outage_shutdown(fleet: Fleet) -> None:
    logs = fleet.tmp / "logs"
    logs.mkdir()
    yaml_text = collector_config(f"{logs}/*.log", fleet.sink.endpoint)
    fleet.publish(yaml_text)
    fleet.start_agent()
    view = fleet.wait_view("agent running", sync_status="Synced", run_state="running")
    agent_id = view.id

    # kill -9 of the collector: the agent brings it back.
    pid = wait_until(fleet.collector_pid, 10, what="collector pid")
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: fleet.collector_pid() not in (None, pid), 15, what="collector restarted")
    wait_until(
        lambda: fleet.agent_metric("ctrltower_collector_restarts_total") == 1, 10, what="restart counted"
    )

    # A local edit is undone and reported as drift.
    fleet.config_path.write_text("# edited by hand\n")
    wait_until(lambda: fleet.config_path.read_text() == yaml_text, 10, what="config restored")
    r = httpx.get(
        f"{fleet.srv.base_url}/api/v1/agents/{agent_id}/events", headers=auth(fleet.operator), timeout=10
    )
    wait_until(
        lambda: any(
            e["kind"] == "drift"
            for e in httpx.get(
                f"{fleet.srv.base_url}/api/v1/agents/{agent_id}/events",
                headers=auth(fleet.operator),
                timeout=10,
            ).json()["items"]
        ),
        10,
        what=f"drift event on the server ({r.text[:300]})",
    )
    fleet.wait_view("synced after drift restore", sync_status="Synced", run_state="running")

    # Stop and start through the API.
    cmd = fleet.command(agent_id, "stop")
    wait_until(lambda: fleet.collector_pid() is None, 10, what="collector stopped")
    fleet.wait_view("stopped", run_state="stopped", stopped_by_operator=True)
    wait_until(lambda: fleet.command_state(agent_id, cmd) == "done", 10, what="stop acked")
    cmd = fleet.command(agent_id, "start")
    wait_until(fleet.collector_pid, 10, what="collector started again")
    fleet.wait_view("running again", run_state="running", stopped_by_operator=False)
    wait_until(lambda: fleet.command_state(agent_id, cmd) == "done", 10, what="start acked")

    # Someone else with the enroll token claims this instance: refused (409), the agent is untouched.
    instance_id = (fleet.tmp / "state" / "instance_id").read_text().strip()
    r = httpx.post(
        f"{fleet.srv.base_url}/api/agent/v1/agents",
        json={"instance_id": instance_id, "hostname": "impostor", "labels": {"role": "edge"}},
        headers=auth(fleet.srv.enroll_token),
        timeout=10,
    )
    assert r.status_code == 409 and r.json()["error"]["code"] == "instance_registered", r.text
    assert fleet.agent_log().count("registered as agent") == 1
    # The agent restarts: it registers again with the token kept in its state dir (proof), same id.
    assert fleet.agent is not None
    assert fleet.agent.stop() == 0, fleet.agent_log()
    fleet.start_agent()
    wait_until(lambda: fleet.agent_log().count("registered as agent") == 2, 10, what="re-registration")
    view = fleet.wait_view("same agent after its restart", run_state="running")
    assert view.id == agent_id and view.hostname != "impostor"

    # The server goes away: telemetry keeps flowing; when it is back, the agent reports again.
    before = fleet.sink.counts()["logs"]
    fleet.srv.kill()
    write_lines(logs / "app.log", "during-outage", 20)
    wait_until(lambda: fleet.sink.counts()["logs"] >= before + 20, 15, what="lines shipped while server down")
    assert fleet.agent is not None and fleet.agent.running()
    fleet.srv.start()
    last_seen = fleet.wait_view("back online", status="online").last_seen
    fleet.wait_view("reporting again", timeout=10)
    wait_until(lambda: (v := fleet.view()) is not None and v.last_seen != last_seen, 10, what="new reports")

    # shutdown: the collector stops and the agent exits 0.
    collector = fleet.collector_pid()
    cmd = fleet.command(agent_id, "shutdown")
    assert fleet.agent.wait(20) == 0, fleet.agent_log()
    assert collector is not None and not alive(collector)
    wait_until(lambda: fleet.command_state(agent_id, cmd) == "done", 10, what="shutdown acked")


def test_no_group_is_quiet_and_polling_goes_on(fleet: Fleet) -> None:
    logs = fleet.tmp / "logs"
    logs.mkdir()
    yaml_text = collector_config(f"{logs}/*.log", fleet.sink.endpoint)
    fleet.publish(yaml_text)  # selects role=edge only
    fleet.start_agent(labels="role=db")
    fleet.wait_view("NoGroup", sync_status="NoGroup", run_state="stopped")
    wait_until(lambda: (v := fleet.view()) is not None and v.last_seen is not None, 5, what="reports")
    assert fleet.config_path.exists() is False and fleet.collector_pid() is None
    # the group changes to select this agent: it picks the config up on its next poll
    fleet.publish(yaml_text, selector={"role": "db"})
    fleet.wait_view("Synced after the group matched", sync_status="Synced", run_state="running")
    write_lines(logs / "db.log", "db", 4)
    wait_until(lambda: "db 3" in fleet.sink.bodies(), 15, what="lines after the group matched")
    assert fleet.agent_log().count("no group matches") == 1


def test_server_scrapes_the_agent_metrics(tmp_path: Path, collector_bin: Path) -> None:
    """The agent's /metrics, as advertised at registration, feed the server's metrics process."""
    import time

    extra = ("--metrics-interval", "0.5")
    with (
        start_sink("127.0.0.1", 0) as sink,
        ServerProcess(tmp_path / "server", poll_interval_s=0.5, metrics=True, extra_args=extra) as srv,
    ):
        fleet = Fleet(tmp_path, srv, sink, collector_bin)
        fleet.reconciler = srv.create_token("reconciler")
        fleet.operator = srv.create_token("operator")
        logs = tmp_path / "logs"
        logs.mkdir()
        fleet.publish(collector_config(f"{logs}/*.log", sink.endpoint))
        fleet.start_agent()
        try:
            view = fleet.wait_view("running", sync_status="Synced", run_state="running")
            assert fleet.agent is not None and view.metrics_url == fleet.agent.metrics_url

            def latest() -> dict[str, Any] | None:
                write_lines(logs / "app.log", "steady", 50)  # keep a rate going while we wait
                r = httpx.get(
                    f"{srv.base_url}/api/v1/metrics/latest",
                    params={"agents": view.id},
                    headers=auth(fleet.operator),
                    timeout=10,
                )
                values = r.json()["agents"].get(view.id) if r.status_code == 200 else None
                ok = values and not values["stale"] and (values["logs_in"] or 0) > 0 and values["logs_out"]
                time.sleep(0.2)
                return values if ok else None

            values = wait_until(latest, 30, interval=0.1, what="server-side log rates for the agent")
            assert values["memory"] > 1_000_000 and values["send_failed"] == 0
            health = httpx.get(
                f"{srv.base_url}/api/v1/metrics/health",
                params={"agents": view.id},
                headers=auth(fleet.operator),
            ).json()["agents"][view.id]
            assert health["failing"] is False and health["consecutive_failures"] == 0
        finally:
            assert fleet.agent is not None
            assert fleet.agent.stop() == 0


def test_agent_keeps_working_after_the_server_database_is_deleted(fleet: Fleet) -> None:
    """Issue 10: the agent proves its identity with the token it keeps; after the server lost state.db
    its instance id is unknown there, so it registers again without proof, and runs the republished
    config. (docs/security.md, "After deleting the server's database".)"""
    logs = fleet.tmp / "logs"
    logs.mkdir()
    yaml_text = collector_config(f"{logs}/*.log", fleet.sink.endpoint)
    fleet.publish(yaml_text)
    fleet.start_agent()
    first = fleet.wait_view("agent synced", sync_status="Synced", run_state="running")
    assert (fleet.tmp / "state" / "agent_token.json").exists()
    fleet.srv.stop()
    for suffix in ("", "-wal", "-shm"):
        (fleet.srv.data_dir / f"state.db{suffix}").unlink(missing_ok=True)
    fleet.srv.start()
    # what the operator does: create the tokens again (the enroll token is re-imported), reconcile
    fleet.reconciler = fleet.srv.create_token("reconciler")
    fleet.operator = fleet.srv.create_token("operator")
    fleet.head = None
    fleet.publish(yaml_text)
    view = fleet.wait_view("registered again and synced", sync_status="Synced", run_state="running")
    assert view.instance_id == first.instance_id and view.id != first.id
    write_lines(logs / "app.log", "after-db-loss", 5)
    wait_until(lambda: "after-db-loss 4" in fleet.sink.bodies(), 15, what="lines after the database loss")
