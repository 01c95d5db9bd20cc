"""The agent's sense of time, injected: the loop, the session, drift, the trust checks and the OpAMP
agent read it here, so a test can step time by hand instead of sleeping (the real one is the system's
monotonic and wall clocks; the applier's health wait still uses them)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime


@dataclass(frozen=True)
class Clock:
    monotonic: Callable[[], float] = time.monotonic  # scheduling: never jumps with NTP
    wall: Callable[[], float] = time.time  # timestamps the server sees
    sleep: Callable[[float], None] = time.sleep

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.wall(), UTC)


SYSTEM_CLOCK = Clock()
