"""Restart scheduling against a fake collector process and a stepped clock: no subprocess (the real
collector's crash and restart is in test_collector.py)."""

from __future__ import annotations

import random

from agent.backoff import Backoff
from agent.clock import Clock
from agent.supervision import STABLE_AFTER_S, Supervision


class FakeProcess:
    def __init__(self) -> None:
        self.pid: int | None = None
        self.started_at: float | None = None
        self.code: int | None = None
        self.starts = 0
        self.refuse: OSError | None = None
        self.now = 0.0

    def alive(self) -> bool:
        return self.pid is not None

    def exit_code(self) -> int | None:
        return self.code

    def forget(self) -> None:
        self.code = None

    def log_mark(self) -> int:
        return 0

    def log_since(self, mark: int, limit: int = 3000) -> str:
        return "panic: bad"

    def start(self) -> int:
        if self.refuse is not None:
            raise self.refuse
        self.starts += 1
        self.pid, self.started_at = 100 + self.starts, self.now
        return self.pid

    def crash(self) -> None:
        self.pid, self.code = None, 2


def make() -> tuple[Supervision, FakeProcess, list[int]]:
    process, exits = FakeProcess(), []
    clock = Clock(monotonic=lambda: process.now)
    backoff = Backoff(1.0, 8.0, rng=random.Random(3))
    return Supervision(process, backoff, clock, on_exit=lambda: exits.append(1)), process, exits


def test_a_crash_is_counted_and_restarted_after_the_backoff() -> None:
    sup, process, exits = make()
    assert sup.due(0.0)  # never started: start now
    assert sup.start() is None and process.alive()
    assert not sup.due(0.5)
    process.crash()
    process.now = 1.0
    assert not sup.due(1.0) and exits == [1]  # counted once, restart backed off
    assert 1.0 < sup.next_restart_at <= 2.0
    assert sup.due(sup.next_restart_at) and exits == [1]


def test_crash_loops_back_off_further_until_the_collector_stays_up() -> None:
    sup, process, _ = make()
    delays = []
    for _ in range(4):
        sup.start()
        process.crash()
        sup.due(process.now)
        delays.append(sup.next_restart_at - process.now)
        process.now = sup.next_restart_at
    assert delays[-1] > 2.0  # the ceiling grew (1, 2, 4, 8)
    sup.start()
    process.now += STABLE_AFTER_S
    sup.due(process.now)  # up long enough: the backoff starts over
    process.crash()
    sup.due(process.now)
    assert sup.next_restart_at - process.now <= 1.0


def test_a_binary_that_cannot_start_is_retried_later() -> None:
    sup, process, exits = make()
    process.refuse = PermissionError("not executable")
    assert sup.start() == "not executable"
    assert not process.alive() and exits == []
    assert not sup.due(0.0) and sup.next_restart_at > 0.0
