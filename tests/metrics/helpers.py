"""Shared pieces of the metrics tests: a settable clock and a scraper on a real DuckDB file, its targets
read through the server's store (a real state.db), as the server wires it (webui/metrics/process.py)."""

from __future__ import annotations

from pathlib import Path

from metrics.scraper import Scraper
from metrics.settings import MetricsSettings
from metrics.store import MetricsStore
from webui import datadir
from webui.metrics.process import StoreTargets
from webui.store import Store

T0 = 1_790_000_040.0  # a whole minute (and not a whole hour), in 2026


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def make(tmp_path: Path, clock: Clock, **overrides: object) -> tuple[MetricsSettings, MetricsStore, Scraper]:
    settings = MetricsSettings(data_dir=tmp_path, **overrides)  # type: ignore[arg-type]
    store = MetricsStore(settings.db_path)
    targets = StoreTargets(Store.open(datadir.state_db(tmp_path)))
    scraper = Scraper(settings, store, targets, clock=clock)
    return settings, store, scraper
