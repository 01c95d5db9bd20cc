"""The agent's /metrics: names from schemas.metrics, on a registry the caller injects."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from agent.collector_metrics import MonotonicCounters, ProcessUsage
from schemas import metrics as names
from schemas.common import SIGNALS

OUTCOMES = ("accepted", "refused", "sent", "send_failed")


def _base(name: str) -> str:
    """prometheus-client adds `_total` to counters itself."""
    return name.removesuffix("_total")


class _CollectorView(Collector):
    """CPU, memory and throughput of the collector, computed at scrape time from the agent's books."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.items = MonotonicCounters()
        self.cpu = MonotonicCounters()
        self.rss: float | None = None

    def collect(self) -> Iterator[Metric]:
        with self.lock:
            items = CounterMetricFamily(
                _base(names.COLLECTOR_ITEMS),
                "Items the collector received (accepted, refused) and exported (sent, send_failed), "
                "monotonic across its reloads and restarts.",
                labels=["signal", "outcome"],
            )
            for signal in SIGNALS:
                for outcome in OUTCOMES:
                    items.add_metric([signal, outcome], self.items.value((signal, outcome)))
            yield items
            yield CounterMetricFamily(
                _base(names.COLLECTOR_CPU),
                "CPU seconds (user+system) of the collector process, monotonic across restarts.",
                value=self.cpu.value("cpu"),
            )
            if self.rss is not None:
                yield GaugeMetricFamily(
                    names.COLLECTOR_MEMORY, "Resident memory of the collector process.", value=self.rss
                )


class AgentMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.info = Gauge(
            names.AGENT_INFO,
            "Agent identity: versions, instance id, group and revision (value 1).",
            ["agent_version", "collector_version", "instance_id", "group", "revision"],
            registry=registry,
        )
        self.up = Gauge(names.COLLECTOR_UP, "1 while the collector process runs.", registry=registry)
        self.restarts = Counter(
            _base(names.COLLECTOR_RESTARTS), "Collector restarts after a crash.", registry=registry
        )
        self.applies = Counter(
            _base(names.CONFIG_APPLIES), "Config applies by result.", ["result"], registry=registry
        )
        for result in ("applied", "failed", "untrusted"):
            self.applies.labels(result=result)
        self.last_poll = Gauge(
            names.LAST_POLL, "Unix time of the last successful exchange with the server.", registry=registry
        )
        self._view = _CollectorView()
        registry.register(self._view)
        self._info_labels: tuple[str, ...] | None = None

    def set_info(
        self, agent_version: str, collector_version: str, instance_id: str, group: str, revision: str
    ) -> None:
        labels = (agent_version, collector_version, instance_id, group, revision)
        if labels == self._info_labels:
            return
        self.info.clear()
        self.info.labels(*labels).set(1)
        self._info_labels = labels

    def observe_items(self, instance_id: str | None, items: dict[Any, float]) -> None:
        with self._view.lock:
            self._view.items.observe(instance_id, items)

    def observe_process(self, pid: int | None, usage: ProcessUsage | None) -> None:
        with self._view.lock:
            if usage is None:
                self._view.rss = None
                return
            self._view.cpu.observe(pid, {"cpu": usage.cpu_seconds})
            self._view.rss = float(usage.rss_bytes)

    def item_value(self, signal: str, outcome: str) -> float:
        with self._view.lock:
            return self._view.items.value((signal, outcome))


class MetricsServer:
    """Serves the registry on HOST:PORT/metrics in a thread (port 0: an ephemeral port)."""

    def __init__(self, registry: CollectorRegistry, host: str, port: int) -> None:
        self._server, self._thread = start_http_server(port, addr=host, registry=registry)
        self.host = host
        self.port = int(self._server.server_port)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/metrics"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
