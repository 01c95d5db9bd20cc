"""Drift restore and operator commands against fakes of the config file, the collector and the applier:
no port, no subprocess (the real collector runs these paths in test_collector.py and the e2e tests)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from agent.clock import Clock
from agent.commands import Commands
from agent.drift import MAX_PENDING, DriftWatch
from agent.state import StateDir, StoredConfig
from schemas.api import Command
from schemas.common import config_hash

GOOD = b"receivers: {}\n"
DESIRED = StoredConfig(GOOD, config_hash(GOOD), "r1", "g")


class FakeFile:
    """The config path in memory; `edit_on_sleep` is what an editor finishes writing while drift waits."""

    def __init__(self, data: bytes | None) -> None:
        self.data = data
        self.writes = 0
        self.edit_on_sleep: bytes | None = None

    def read_local(self) -> bytes | None:
        return self.data

    def write(self, data: bytes) -> None:
        self.writes += 1
        self.data = data

    def settle(self, seconds: float) -> None:
        if self.edit_on_sleep is not None:
            self.data = self.edit_on_sleep


def watch(file: FakeFile) -> DriftWatch:
    clock = Clock(wall=lambda: 0.0, sleep=file.settle)
    return DriftWatch(file, Path("/etc/c.yaml"), clock)


def test_an_edit_is_undone_and_recorded() -> None:
    file = FakeFile(b"edited")
    drift = watch(file)
    assert drift.restore(DESIRED) is True
    assert file.data == GOOD
    [event] = drift.pending
    assert (event.local_hash, event.desired_hash) == (config_hash(b"edited"), DESIRED.hash)
    assert event.at == datetime(1970, 1, 1, tzinfo=UTC)  # the injected clock's time
    assert drift.restore(DESIRED) is False and len(drift.pending) == 1  # nothing more to undo
    drift.delivered(1)
    assert drift.pending == []


def test_a_deleted_file_is_drift_except_at_boot() -> None:
    file = FakeFile(None)
    drift = watch(file)
    assert drift.restore(DESIRED, missing_is_drift=False) is False
    assert file.data == GOOD and drift.pending == []  # written back, nothing to report
    file.data = None
    assert drift.restore(DESIRED) is True
    assert drift.pending[0].local_hash is None


def test_an_editor_that_puts_the_bytes_back_is_not_drift() -> None:
    file = FakeFile(b"half-writ")
    file.edit_on_sleep = GOOD
    drift = watch(file)
    assert drift.restore(DESIRED) is False
    assert drift.pending == [] and file.writes == 0


def test_nothing_desired_nothing_restored_and_the_list_is_bounded() -> None:
    file = FakeFile(b"x")
    drift = watch(file)
    assert drift.restore(None) is False and file.data == b"x"
    for i in range(MAX_PENDING + 5):
        file.data = f"edit {i}".encode()
        assert drift.restore(DESIRED)
    assert len(drift.pending) == MAX_PENDING
    assert drift.pending[-1].local_hash == config_hash(f"edit {MAX_PENDING + 4}".encode())


class FakeCollector:
    def __init__(self) -> None:
        self.running = False
        self.stops = 0

    def alive(self) -> bool:
        return self.running

    def stop(self, timeout: float) -> int | None:
        self.stops += 1
        self.running = False
        return 0


class FakeApplier:
    def __init__(self, collector: FakeCollector) -> None:
        self.collector = collector
        self.problem: str | None = None
        self.runs = 0

    def run(self, reload: bool = True) -> str | None:
        self.runs += 1
        self.collector.running = self.problem is None
        return self.problem


class Host:
    def __init__(self, tmp_path: Path, desired: StoredConfig | None = DESIRED) -> None:
        self.desired = desired
        self.collector = FakeCollector()
        self.applier = FakeApplier(self.collector)
        self.state = StateDir(tmp_path / "state")
        self.restored = False
        self.marked = 0
        self.commands = self.make()

    def make(self) -> Commands:
        return Commands(
            self.collector,
            self.applier,
            self.state,
            5.0,
            desired=lambda: self.desired,
            restore=lambda: self.restored,
            mark_restored=self.mark,
        )

    def mark(self) -> None:
        self.marked += 1


def cmd(id: int, action: str) -> Command:
    return Command(id=id, action=action, issued_at=datetime.now(UTC))  # type: ignore[arg-type]


def test_stop_holds_across_restarts_until_start(tmp_path: Path) -> None:
    host = Host(tmp_path)
    host.collector.running = True
    assert host.commands.execute(cmd(1, "stop")).result == "done"
    assert not host.collector.running and host.commands.operator_stopped
    assert host.make().operator_stopped  # a restarted agent still holds the stop
    assert host.commands.execute(cmd(2, "start")).result == "done"
    assert host.collector.running and not host.make().operator_stopped
    assert host.commands.execute(cmd(3, "start")).result == "done"
    assert host.applier.runs == 1  # already running: start is a no-op


def test_restart_restores_drift_and_reports_a_failed_start(tmp_path: Path) -> None:
    host = Host(tmp_path)
    host.collector.running = True
    host.restored = True
    assert host.commands.execute(cmd(1, "restart")).result == "done"
    assert host.collector.stops == 1 and host.applier.runs == 1 and host.marked == 1
    host.applier.problem = "x" * 5000 + "bad config"
    ack = host.commands.execute(cmd(2, "restart"))
    assert ack.result == "failed" and ack.error is not None
    assert ack.error.endswith("bad config") and len(ack.error) == 4000  # the tail, bounded
    assert host.marked == 1  # a failed start does not claim the config is back


def test_start_without_a_config_fails_and_shutdown_ends_the_loop(tmp_path: Path) -> None:
    host = Host(tmp_path, desired=None)
    ack = host.commands.execute(cmd(1, "start"))
    assert ack.result == "failed" and "no config" in (ack.error or "")
    assert host.applier.runs == 0
    host.collector.running = True
    assert host.commands.execute(cmd(2, "shutdown")).result == "done"
    assert host.commands.shutdown_requested and not host.collector.running


def test_each_command_runs_once_and_acks_wait_for_delivery(tmp_path: Path) -> None:
    host = Host(tmp_path)
    host.commands.take([cmd(1, "stop"), cmd(2, "start")])
    host.commands.take([cmd(1, "stop"), cmd(2, "start")])  # repeated until acked: not run again
    assert [a.id for a in host.commands.pending_acks] == [1, 2]
    assert host.collector.stops == 1
    host.commands.delivered(1)
    assert [a.id for a in host.commands.pending_acks] == [2]
