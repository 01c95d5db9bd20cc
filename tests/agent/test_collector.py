"""The apply path and the supervision loop against the real collector, shipping to demo/sink.py.

No server here: these run the agent's pieces (and the whole loop with the server unreachable),
so they also prove the agent keeps telemetry flowing while the server is away.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry

from agent.apply import Applier
from agent.client import MetricsScraper
from agent.runner import Agent
from agent.settings import AgentSettings
from agent.state import StateDir, StoredConfig
from agent.supervisor import CollectorProcess
from demo.sink import SinkHandle, start_sink
from schemas.common import config_hash
from tests.agent.helpers import collector_config, wait_until, write_lines
from tests.conftest import free_port

pytestmark = pytest.mark.collector


@pytest.fixture
def sink() -> Iterator[SinkHandle]:
    with start_sink("127.0.0.1", 0) as handle:
        yield handle


def stored(text: str, revision: str = "aaaaaaa") -> StoredConfig:
    return StoredConfig(text.encode(), config_hash(text), revision, "edge")


@pytest.fixture
def applier(tmp_path: Path, collector_bin: Path) -> Iterator[Applier]:
    port = free_port()
    env = dict(os.environ, CTRLTOWER_TELEMETRY_PORT=str(port))
    process = CollectorProcess(
        collector_bin, tmp_path / "etc" / "collector.yaml", env, tmp_path / "collector.log"
    )
    scraper = MetricsScraper(f"http://127.0.0.1:{port}/metrics", timeout=1.0)
    yield Applier(process, scraper, health_timeout_s=4.0, health_settle_s=0.5)
    process.stop(5)
    scraper.close()


def running_on_a(applier: Applier, sink: SinkHandle, tmp_path: Path) -> tuple[Path, Path, StoredConfig, int]:
    """Log directories a/ and b/; the collector applied and running a config that tails a/.
    Returns (a, b, that config, the collector's pid)."""
    logs_a, logs_b = tmp_path / "a", tmp_path / "b"
    logs_a.mkdir()
    logs_b.mkdir()
    config = stored(collector_config(f"{logs_a}/*.log", sink.endpoint))
    assert applier.apply(config, None, should_run=True).ok
    pid = applier.collector.pid
    assert pid is not None
    return logs_a, logs_b, config, pid


def test_apply_reject_and_rollback_keep_the_old_config_shipping(
    applier: Applier, sink: SinkHandle, tmp_path: Path
) -> None:
    logs_a, logs_b, good, pid = running_on_a(applier, sink, tmp_path)
    sent = write_lines(logs_a / "app.log", "first", 20)
    assert sink.wait_for("logs", 20, timeout=10) == 20
    assert sink.bodies() == sent

    # 1. The collector's own validation rejects an unknown key: nothing changes, not even the file.
    bad = stored(collector_config(f"{logs_b}/*.log", sink.endpoint, extra="    no_such_key: 1\n"))
    outcome = applier.apply(bad, good, should_run=True)
    assert not outcome.ok and "no_such_key" in (outcome.error or "")
    assert applier.read_local() == good.data and applier.collector.pid == pid
    assert not list(applier.path.parent.glob(".*staging"))

    # 2. Valid, but the collector does not come up healthy (its metrics are not where the agent looks):
    #    the last good config is put back and runs again.
    elsewhere = stored(collector_config(f"{logs_b}/*.log", sink.endpoint, telemetry_port=str(free_port())))
    outcome = applier.apply(elsewhere, good, should_run=True)
    assert not outcome.ok and "did not answer" in (outcome.error or "")
    assert applier.read_local() == good.data and applier.collector.alive()

    # 3. Valid, but the collector dies on it (its metrics port is taken): rolled back and running.
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        taken = stored(
            collector_config(f"{logs_b}/*.log", sink.endpoint, telemetry_port=str(held.getsockname()[1]))
        )
        outcome = applier.apply(taken, good, should_run=True)
    assert not outcome.ok, outcome
    assert applier.read_local() == good.data and applier.collector.alive()
    assert applier.wait_healthy(None, 0) is None

    # The old config still ships new lines from the old path, and nothing from the new path.
    before = sink.counts()["logs"]
    write_lines(logs_a / "app.log", "second", 5)
    write_lines(logs_b / "app.log", "never", 5)
    wait_until(lambda: "second 4" in sink.bodies(), 10, what="lines from the old path after rollbacks")
    assert sink.counts()["logs"] >= before + 5
    assert not [b for b in sink.bodies() if b.startswith("never")]


def test_new_config_changes_behaviour(applier: Applier, sink: SinkHandle, tmp_path: Path) -> None:
    _, logs_b, first, pid = running_on_a(applier, sink, tmp_path)
    second = stored(collector_config(f"{logs_b}/*.log", sink.endpoint), revision="bbbbbbb")
    assert applier.apply(second, first, should_run=True).ok
    assert applier.collector.pid == pid  # reloaded with SIGHUP, not restarted
    write_lines(logs_b / "new.log", "from-b", 3)
    wait_until(lambda: "from-b 2" in sink.bodies(), 10, what="lines from the new include path")


def _agent(tmp_path: Path, collector_bin: Path, **overrides: object) -> Agent:
    values: dict[str, object] = dict(
        server=f"http://127.0.0.1:{free_port()}",  # nobody listens: the server is down
        enroll_token="unused",
        collector=collector_bin,
        config_path=tmp_path / "etc" / "collector.yaml",
        state_dir=tmp_path / "state",
        labels={"role": "edge"},
        metrics_port=0,
        poll_interval_s=0.3,
        health_timeout_s=5.0,
        health_settle_s=0.3,
        backoff_initial_s=0.2,
        backoff_max_s=1.0,
        restart_backoff_initial_s=0.2,
        restart_backoff_max_s=1.0,
    )
    return Agent(AgentSettings.model_validate(values | overrides), CollectorRegistry())


def test_agent_runs_last_good_while_server_down_and_supervises(
    tmp_path: Path, collector_bin: Path, sink: SinkHandle
) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    good = stored(collector_config(f"{logs}/*.log", sink.endpoint))
    StateDir(tmp_path / "state").save_last_good(good)
    agent = _agent(tmp_path, collector_bin)
    stop = threading.Event()
    thread = threading.Thread(target=agent.run, args=(stop,), daemon=True)
    thread.start()
    try:
        wait_until(lambda: agent.collector_state() == "running", 10, what="collector running from last good")
        assert agent.metrics_server is not None
        metrics_url = agent.metrics_server.url

        # Throughput on /metrics equals the lines written (and what the sink counted).
        write_lines(logs / "app.log", "line", 37)
        assert sink.wait_for("logs", 37, timeout=10) == 37

        def exposed(outcome: str) -> float:
            for line in httpx.get(metrics_url).text.splitlines():
                if line.startswith(f'ctrltower_collector_items_total{{outcome="{outcome}",signal="logs"}}'):
                    return float(line.split()[-1])
            return -1.0

        wait_until(lambda: exposed("sent") == 37, 5, what="sent=37 on /metrics")
        assert exposed("accepted") == 37 and exposed("send_failed") == 0
        page = httpx.get(metrics_url).text
        assert "ctrltower_collector_up 1.0" in page
        assert "ctrltower_collector_resident_memory_bytes" in page

        # kill -9: it comes back, and the restart is counted.
        pid = agent.collector.pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        wait_until(lambda: agent.collector.pid not in (None, pid), 10, what="collector restarted")
        wait_until(lambda: "ctrltower_collector_restarts_total 1.0" in httpx.get(metrics_url).text, 5)
        # counters stay monotonic across the restart (the new process re-reads the file: more, never less)
        wait_until(lambda: exposed("sent") >= 74, 10, what="sent after restart keeps counting")

        # A local edit is noticed within a poll interval, reported as drift and undone.
        path = tmp_path / "etc" / "collector.yaml"
        edited = path.with_name("edited.yaml")
        edited.write_text("receivers: {}\n")
        edited.rename(path)
        wait_until(lambda: path.read_bytes() == good.data, 5, what="config restored after local edit")
        wait_until(lambda: agent.pending_drift, 5, what="drift recorded")
        assert agent.pending_drift[0].local_hash == config_hash("receivers: {}\n")
        assert agent.pending_drift[0].desired_hash == good.hash
        wait_until(lambda: agent.last_apply is not None, 10, what="restore reported as applied")
        path.unlink()
        wait_until(
            lambda: path.exists() and path.read_bytes() == good.data, 5, what="deleted config restored"
        )
        assert agent.pending_drift[-1].local_hash is None
        wait_until(lambda: agent.collector_state() == "running", 10, what="running after drift restore")
    finally:
        stop.set()
        thread.join(20)
    assert not thread.is_alive()
    assert agent.collector.pid is None  # stopping the agent stops the collector


def test_example_repo_edge_group_runs_under_the_agent(
    tmp_path: Path, collector_bin: Path, sink: SinkHandle
) -> None:
    """The compiler's rendering of example-config-repo's `edge` group, byte for byte, ships lines."""
    from compiler.api import compile_repo  # the test may use the compiler; the agent never does
    from tests.conftest import ROOT

    repo = ROOT / "example-config-repo"
    files = {p.relative_to(repo).as_posix(): p.read_bytes() for p in repo.rglob("*.yaml")}
    result = compile_repo(files)
    edge = next(g for g in result.groups if g.name == "edge")
    logs = tmp_path / "app-logs"
    logs.mkdir()
    port = free_port()
    env = dict(
        os.environ,
        CTRLTOWER_TELEMETRY_PORT=str(port),
        APP_LOG_DIR=str(logs),
        OTLP_HTTP_ENDPOINT=sink.endpoint,
    )
    process = CollectorProcess(collector_bin, tmp_path / "collector.yaml", env, tmp_path / "collector.log")
    scraper = MetricsScraper(f"http://127.0.0.1:{port}/metrics", timeout=1.0)
    applier = Applier(process, scraper, health_timeout_s=5.0, health_settle_s=0.3)
    try:
        outcome = applier.apply(StoredConfig(edge.config.encode(), edge.config_hash, "e", "edge"), None, True)
        assert outcome.ok, outcome.error
        assert config_hash(applier.read_local() or b"") == edge.config_hash
        # The example reads with `start_at: end`: a file the receiver finds on its first poll is read from
        # its end, one created after that poll from its start. Healthy is not polled: under load the first
        # poll can come after the apply. Its readiness report is its warning that no file matches yet.
        collector_log = tmp_path / "collector.log"
        wait_until(
            lambda: "finding files" in collector_log.read_text(errors="replace"),
            15,
            what="the filelog receiver's first poll (its 'finding files' warning)",
        )
        sent = write_lines(
            logs / "app.log", "edge", 12
        )  # a new file after the first poll: read from its start
        try:
            # at least once: an export retried under load may arrive twice, so compare the lines, not the list
            wait_until(lambda: set(sink.bodies()) == set(sent), 15, what="the edge lines at the sink")
        except AssertionError as exc:
            tail = collector_log.read_text(errors="replace")[-3000:]
            raise AssertionError(f"{exc}; sink has {sink.counts()}; collector log ends:\n{tail}") from None
    finally:
        process.stop(5)
        scraper.close()


def test_operator_stop_persists_across_agent_restarts(
    tmp_path: Path, collector_bin: Path, sink: SinkHandle
) -> None:
    from datetime import UTC, datetime

    from schemas.api import Command

    logs = tmp_path / "logs"
    logs.mkdir()
    StateDir(tmp_path / "state").save_last_good(stored(collector_config(f"{logs}/*.log", sink.endpoint)))

    def command(n: int, action: str) -> Command:
        return Command(id=n, action=action, issued_at=datetime.now(UTC))  # type: ignore[arg-type]

    first = _agent(tmp_path, collector_bin, metrics_port=None)
    first._boot()
    wait_until(lambda: first.collector_state() == "running", 10, what="running")
    assert first.execute(command(1, "stop")).result == "done"
    assert first.collector.pid is None and first.status_report().stopped_by_operator
    first.close()

    # A new agent process on the same state dir: the collector stays stopped until `start`.
    second = _agent(tmp_path, collector_bin, metrics_port=None)
    try:
        second._boot()
        for _ in range(5):
            second.tick()
        assert second.collector.pid is None and second.collector_state() == "stopped"
        assert second.status_report().stopped_by_operator
        ack = second.execute(command(2, "start"))
        assert ack.result == "done", ack.error
        pid = second.collector.pid
        assert pid is not None and not second.state.operator_stopped()
        assert second.execute(command(3, "restart")).result == "done"
        assert second.collector.pid not in (None, pid)
    finally:
        second.close()
    assert second.collector.pid is None


def test_reload_of_a_config_that_pins_its_instance_id(
    applier: Applier, sink: SinkHandle, tmp_path: Path
) -> None:
    """The new-instance check falls back to the collector's 'Everything is ready' log line."""
    logs = tmp_path / "logs"
    logs.mkdir()

    def pinned(prefix: str) -> StoredConfig:
        text = collector_config(f"{logs}/{prefix}*.log", sink.endpoint).replace(
            "    logs:\n      level: warn\n", "    resource:\n      service.instance.id: pinned-1\n"
        )
        assert "pinned-1" in text
        return stored(text)

    first, second = pinned("a"), pinned("b")
    assert applier.apply(first, None, should_run=True).ok
    pid = applier.collector.pid
    outcome = applier.apply(second, first, should_run=True)
    assert outcome.ok, outcome.error
    assert applier.collector.pid == pid
    write_lines(logs / "b.log", "pinned", 2)
    wait_until(lambda: "pinned 1" in sink.bodies(), 10, what="lines after the reload")


def test_advertised_metrics_url(tmp_path: Path, collector_bin: Path) -> None:
    from agent.metrics import MetricsServer
    from agent.runner import outgoing_address

    assert outgoing_address("http://127.0.0.1:9") == "127.0.0.1"
    agent = _agent(tmp_path, collector_bin)
    assert agent.advertised_metrics_url() is None  # not serving yet
    agent.metrics_server = MetricsServer(agent.metrics.registry, "127.0.0.1", 0)
    try:
        port = agent.metrics_server.port
        assert agent.advertised_metrics_url() == f"http://127.0.0.1:{port}/metrics"
        agent.metrics_server.host = "0.0.0.0"  # as with --metrics-listen 0.0.0.0:PORT (no such bind here)
        assert agent.advertised_metrics_url() == f"http://127.0.0.1:{port}/metrics"  # the route to the server
    finally:
        agent.close()
    pinned = _agent(tmp_path, collector_bin, metrics_url="http://node-1.example:9464/metrics")
    assert pinned.advertised_metrics_url() == "http://node-1.example:9464/metrics"
    pinned.close()
