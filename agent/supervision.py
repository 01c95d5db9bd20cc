"""Keeping the collector up: a collector that exits on its own is counted and started again after a
backoff (reset once it has stayed up STABLE_AFTER_S); a binary that cannot be started is retried the same
way. The process and the clock are passed in, so a test drives it with a fake process and stepped time.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Protocol

from agent.backoff import Backoff
from agent.clock import Clock
from schemas.errors import Permanent

log = logging.getLogger("ctrltower.agent")

STABLE_AFTER_S = 30.0  # a collector up this long resets the restart backoff


class Process(Protocol):
    """The part of agent.supervisor.CollectorProcess supervision uses."""

    @property
    def pid(self) -> int | None: ...

    @property
    def started_at(self) -> float | None: ...

    def alive(self) -> bool: ...

    def exit_code(self) -> int | None: ...

    def forget(self) -> None: ...

    def log_mark(self) -> int: ...

    def log_since(self, mark: int, limit: int = 3000) -> str: ...

    def start(self) -> int: ...


class Supervision:
    def __init__(self, process: Process, backoff: Backoff, clock: Clock, on_exit: Callable[[], None]) -> None:
        self.process = process
        self.backoff = backoff
        self.clock = clock
        self.on_exit = on_exit  # counts the restart (agent metric)
        self.next_restart_at = 0.0

    def start(self) -> str | None:
        """Start the collector; the error (and a backed-off retry) if it cannot be started."""
        try:
            self.process.start()
        except (Permanent, OSError) as exc:  # binary missing or not executable: retried with backoff
            log.error("cannot start the collector: %s", exc)
            self.next_restart_at = self.clock.monotonic() + self.backoff.next_delay()
            return str(exc)
        log.info("collector started (pid %s)", self.process.pid)
        return None

    def due(self, now: float) -> bool:
        """Look at the collector once; True when it should run, is down, and its restart is due."""
        process = self.process
        if process.alive():
            started = process.started_at or now
            if now - started >= STABLE_AFTER_S:
                self.backoff.reset()
            return False
        code = process.exit_code()
        if code is not None:  # it was running and nobody stopped it
            tail = process.log_since(max(0, process.log_mark() - 1500))
            log.warning("collector exited with code %s; last output: %s", code, tail[-500:])
            process.forget()
            self.on_exit()
            self.next_restart_at = now + self.backoff.next_delay()
        return now >= self.next_restart_at
