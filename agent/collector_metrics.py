"""What the agent learns about its collector: throughput from the collector's internal metrics page,
CPU and memory from /proc, and counters kept monotonic across the collector's reloads and restarts.

Pure parsing and bookkeeping; the page is fetched by agent.client, /proc is read here (files only).
"""

from __future__ import annotations

import os
import re
from collections.abc import Hashable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from prometheus_client.parser import text_string_to_metric_families

from schemas.metrics import ItemOutcome

SIGNAL_OF: Final = {"log_records": "logs", "metric_points": "metrics", "spans": "traces"}
# The 0.135 names (measured): otelcol_receiver_accepted_log_records_total, ..._refused_...,
# otelcol_exporter_sent_log_records_total, otelcol_exporter_send_failed_log_records_total; the
# same with metric_points and spans. Older collectors omit the _total suffix.
_ITEM = re.compile(
    r"^otelcol_(?:receiver_(?P<rin>accepted|refused)|exporter_(?P<rout>sent|send_failed))_"
    r"(?P<unit>log_records|metric_points|spans)(?:_total)?$"
)
ItemKey = tuple[str, ItemOutcome]  # (signal, outcome)


@dataclass(frozen=True)
class CollectorPage:
    """The parts of one scrape the agent uses."""

    instance_id: str | None  # target_info{service_instance_id}: a new one after every reload
    items: dict[ItemKey, float]


def parse_page(text: str) -> CollectorPage:
    """Sum the item counters over receivers/exporters; find the service instance id."""
    items: dict[ItemKey, float] = {}
    instance: str | None = None
    try:
        families = list(text_string_to_metric_families(text))
    except (ValueError, IndexError):
        return CollectorPage(None, {})
    for family in families:
        for sample in family.samples:
            if sample.name == "target_info":
                instance = sample.labels.get("service_instance_id", instance)
                continue
            match = _ITEM.match(sample.name)
            if match is None:
                continue
            outcome = match["rin"] or match["rout"]
            key: ItemKey = (SIGNAL_OF[match["unit"]], outcome)  # type: ignore[assignment]
            items[key] = items.get(key, 0.0) + float(sample.value)
    return CollectorPage(instance, items)


@dataclass
class MonotonicCounters:
    """Counters that survive the source's resets: value = offset (earlier lives) + current raw value.

    `generation` identifies one life of the source (the collector's service instance id, or the
    pid for CPU time); when it changes, everything seen so far moves into the offset. A decrease
    without a generation change is a reset too.
    """

    generation: Hashable = None
    _offset: dict[Hashable, float] = field(default_factory=dict)
    _last: dict[Hashable, float] = field(default_factory=dict)

    def observe(self, generation: Hashable, raw: dict[Hashable, float]) -> None:
        if generation != self.generation:
            for key, value in self._last.items():
                self._offset[key] = self._offset.get(key, 0.0) + value
            self._last = {}
            self.generation = generation
        for key, value in raw.items():
            last = self._last.get(key, 0.0)
            if value < last:
                self._offset[key] = self._offset.get(key, 0.0) + last
            self._last[key] = value

    def value(self, key: Hashable) -> float:
        return self._offset.get(key, 0.0) + self._last.get(key, 0.0)

    def keys(self) -> set[Hashable]:
        return set(self._offset) | set(self._last)


_CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


@dataclass(frozen=True)
class ProcessUsage:
    cpu_seconds: float
    rss_bytes: int


def process_usage(pid: int, proc: Path = Path("/proc")) -> ProcessUsage | None:
    """User+system CPU seconds and resident memory of `pid`, or None if it is gone."""
    try:
        stat = (proc / str(pid) / "stat").read_text()
        statm = (proc / str(pid) / "statm").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    rest = stat.rsplit(")", 1)[-1].split()
    try:
        utime, stime = int(rest[11]), int(rest[12])
        rss_pages = int(statm.split()[1])
    except (IndexError, ValueError):
        return None
    return ProcessUsage((utime + stime) / _CLK_TCK, rss_pages * _PAGE)
