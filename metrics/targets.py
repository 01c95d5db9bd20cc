"""What the metrics process scrapes and marks on charts, and the interface it gets them through.

The metrics process does not read the server's database: whoever starts it passes a `TargetSource`.
The server passes one over its store (`webui.metrics.process.StoreTargets`: the agents' table in
SQLite or PostgreSQL); in scale-out the service wraps it in `metrics.shards.ShardedTargets`, which keeps
the agents of the shards this replica holds. Tests pass their own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from schemas.errors import RetryLater


class TargetsUnavailable(RetryLater):
    """The source could not be read (database busy or down); the next round asks again."""


@dataclass(frozen=True, slots=True)
class ScrapeTarget:
    agent_id: str
    url: str
    group: str | None


@dataclass(frozen=True, slots=True)
class Annotation:
    """A revision an agent applied, at `at`: a marker on its charts."""

    agent_id: str
    at: float
    revision: str | None


class TargetSource(Protocol):
    """Where the metrics process learns whom to scrape and what to mark. Called from worker threads.

    Errors are TargetsUnavailable (or another RetryLater): a round without targets, a chart without
    markers, never a crash."""

    def targets(self, now: float, online_within_s: float) -> list[ScrapeTarget]:
        """Agents with a metrics URL that reported within `online_within_s` before `now`, by id."""
        ...

    def annotations(
        self,
        start: float,
        end: float,
        *,
        agent: str | None = None,
        group: str | None = None,
        limit: int = 500,
    ) -> list[Annotation]:
        """Revision applies in [start, end) of one agent, of a group's current agents, or of all."""
        ...
