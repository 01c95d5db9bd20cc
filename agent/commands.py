"""An operator's commands (stop, start, restart, shutdown), each run once and acknowledged.

`stop` holds across agent restarts (STATE_DIR/operator_stopped) until `start`; `shutdown` stops the
collector and ends the loop after the ack is delivered. The collector, the applier and the agent's
desired config and drift restore are passed in, so a test runs every command against fakes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Protocol

from agent.state import StateDir, StoredConfig
from schemas.api import Command, CommandAck

log = logging.getLogger("ctrltower.agent")


class Collector(Protocol):
    def alive(self) -> bool: ...

    def stop(self, timeout: float) -> int | None: ...


class Runner(Protocol):
    def run(self, reload: bool = True) -> str | None: ...


class Commands:
    def __init__(
        self,
        collector: Collector,
        applier: Runner,
        state: StateDir,
        stop_timeout_s: float,
        *,
        desired: Callable[[], StoredConfig | None],
        restore: Callable[[], bool],
        mark_restored: Callable[[], None],
    ) -> None:
        self.collector = collector
        self.applier = applier
        self.state = state
        self.stop_timeout_s = stop_timeout_s
        self.desired = desired
        self.restore = restore
        self.mark_restored = mark_restored
        self.operator_stopped = state.operator_stopped()
        self.shutdown_requested = False
        self.seen: set[int] = set()
        self.pending_acks: list[CommandAck] = []  # not yet delivered to the server

    def take(self, commands: Iterable[Command]) -> None:
        """Run the commands not seen before (the server repeats a command until its ack arrives)."""
        for command in commands:
            if command.id in self.seen:
                continue
            self.seen.add(command.id)
            self.pending_acks.append(self.execute(command))

    def delivered(self, count: int) -> None:
        self.pending_acks = self.pending_acks[count:]

    def execute(self, command: Command) -> CommandAck:
        log.info("command %s: %s", command.id, command.action)
        action = command.action
        if action == "stop":
            self.operator_stopped = True
            self.state.set_operator_stopped(True)
            self.collector.stop(self.stop_timeout_s)
            return CommandAck(id=command.id, result="done")
        if action == "shutdown":
            self.collector.stop(self.stop_timeout_s)
            self.shutdown_requested = True
            return CommandAck(id=command.id, result="done")
        # start, restart
        self.operator_stopped = False
        self.state.set_operator_stopped(False)
        if self.desired() is None:
            return CommandAck(id=command.id, result="failed", error="no config received yet: nothing to run")
        if action == "restart":
            self.collector.stop(self.stop_timeout_s)
        elif self.collector.alive():
            return CommandAck(id=command.id, result="done")
        restored = self.restore()
        problem = self.applier.run()
        if problem is not None:
            return CommandAck(id=command.id, result="failed", error=problem[-4000:])
        if restored:
            self.mark_restored()
        return CommandAck(id=command.id, result="done")
