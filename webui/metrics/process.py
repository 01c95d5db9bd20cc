"""The metrics process as the server runs it: the one place where the metrics part meets the server.

The metrics package (metrics/) may import only `schemas`, so it cannot read the server's settings or
store; the server's child process (webui/serve.py `_metrics_main`) calls `run(settings)` here, which
builds what `metrics.service.run` takes:

- `metrics_settings(settings)`: the `MetricsSettings` derived from the server's (data dir, scrape
  interval, the offline window as the online window, scale-out database and lake);
- `StoreTargets(store)`: the `metrics.targets.TargetSource` over the server's store (SQLite or
  PostgreSQL: `Store.scrape_targets`, `Store.applied_revisions`), opened in the metrics process and
  closed when it ends.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from metrics.service import run as run_metrics
from metrics.settings import MetricsSettings
from metrics.targets import Annotation, ScrapeTarget, TargetsUnavailable
from schemas.errors import CtrlTowerError
from webui.settings import ServerSettings
from webui.store import Store


def metrics_settings(settings: ServerSettings) -> MetricsSettings:
    """The metrics process's settings, derived from the server's."""
    extra: dict[str, Any] = {"online_within_s": settings.offline_after_s}
    if settings.metrics_interval_s:
        extra["interval_s"] = settings.metrics_interval_s
        extra["timeout_s"] = min(5.0, settings.metrics_interval_s)  # a scrape never outlives its interval
    if settings.metrics_max_gap_intervals:
        extra["max_gap_intervals"] = settings.metrics_max_gap_intervals
    if settings.database_url and settings.metrics_lake:
        extra["database_url"] = settings.database_url
        extra["lake_path"] = settings.metrics_lake
        extra["shards"] = settings.metrics_shards
    return MetricsSettings(data_dir=settings.data_dir, **extra)


class StoreTargets:
    """A `metrics.targets.TargetSource` over the server's store; database errors become
    TargetsUnavailable (the scraper tries again next round, a chart gets a 503)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def targets(self, now: float, online_within_s: float) -> list[ScrapeTarget]:
        try:
            return self.store.scrape_targets(now - online_within_s)
        except (sqlite3.Error, CtrlTowerError) as exc:
            raise TargetsUnavailable(f"reading scrape targets: {exc}") from exc

    def annotations(
        self,
        start: float,
        end: float,
        *,
        agent: str | None = None,
        group: str | None = None,
        limit: int = 500,
    ) -> list[Annotation]:
        try:
            return self.store.applied_revisions(start, end, agent=agent, group=group, limit=limit)
        except (sqlite3.Error, CtrlTowerError) as exc:
            raise TargetsUnavailable(f"reading revision applies: {exc}") from exc

    def close(self) -> None:
        self.store.close()


def open_store(settings: ServerSettings) -> Store:
    """The server's store as the metrics process uses it: already migrated by the server's main process
    (migrating again is a no-op), a pool of two on PostgreSQL (one reader thread at a time, plus one)."""
    return Store.open(
        settings.db_path,
        database_url=settings.database_url,
        pool_size=2,
        poll_interval_s=settings.poll_interval_s,
        offline_after_s=settings.offline_after_s,
    )


def run(settings: ServerSettings) -> None:
    """Entry of the metrics process (webui/serve.py `_metrics_main`): until SIGTERM."""
    targets = StoreTargets(open_store(settings))
    try:
        run_metrics(metrics_settings(settings), targets)
    finally:
        targets.close()
