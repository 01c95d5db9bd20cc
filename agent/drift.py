"""Drift: the file at the config path is not the desired config. The watch puts the desired bytes back
and keeps the events for the next status report (the last 100: the report's limit).

It reads and writes through the applier (the one owner of the config path) and takes the clock, so a
test drives it with an in-memory file and no sleeps.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Protocol

from agent.clock import Clock
from agent.state import StoredConfig
from schemas.api import DriftEvent
from schemas.common import config_hash

log = logging.getLogger("ctrltower.agent")

DRIFT_SETTLE_S = 0.05
MAX_PENDING = 100  # StatusReport.drift_events' max_length


class ConfigFile(Protocol):
    """The part of agent.apply.Applier drift uses (a test passes a fake)."""

    def read_local(self) -> bytes | None: ...

    def write(self, data: bytes) -> None: ...


class DriftWatch:
    def __init__(self, local: ConfigFile, path: Path, clock: Clock) -> None:
        self.local = local
        self.path = path  # for the log line only
        self.clock = clock
        self.pending: list[DriftEvent] = []  # not yet delivered to the server

    def restore(self, desired: StoredConfig | None, missing_is_drift: bool = True) -> bool:
        """Put the desired config back at the path if it differs, recording drift; True if it did.
        With missing_is_drift False (at boot), a missing file is written back without an event."""
        if desired is None or self.local.read_local() == desired.data:
            return False
        if not missing_is_drift and self.local.read_local() is None:
            self.local.write(desired.data)
            return False
        self.clock.sleep(DRIFT_SETTLE_S)  # an editor may be mid-write: report what it leaves, not half of it
        found = self.local.read_local()
        if found == desired.data:
            return False
        found_hash = config_hash(found) if found is not None else None
        log.warning(
            "drift: %s is %s, desired %s: restoring",
            self.path,
            found_hash[:12] if found_hash else "deleted",
            desired.hash[:12],
        )
        self.pending = [
            *self.pending[-(MAX_PENDING - 1) :],
            DriftEvent(at=self.clock.now(), local_hash=found_hash, desired_hash=desired.hash),
        ]
        self.local.write(desired.data)
        return True

    def delivered(self, count: int) -> None:
        """The first `count` events reached the server."""
        self.pending = self.pending[count:]
