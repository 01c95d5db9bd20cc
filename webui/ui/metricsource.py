"""Where the UI gets agent metrics: the metrics process's internal endpoint on DATA_DIR/metrics.sock
(`GET /latest?agents=...` and `GET /query?metric=&agent=&start=&end=`, see docs/metrics.md).

A page never fails because metrics are missing: every call returns its data plus a note saying
honestly why something is empty ("metrics unavailable", "no data"). One httpx client per app,
kept in `app.extensions`, with short timeouts.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from flask import current_app

from webui.metrics.client import MetricsClient, MetricsUnavailable
from webui.ui.charts import Point

EXTENSION_KEY = "ctrltower.ui.metrics"
TIMEOUT_S = 2.0
PARALLEL_QUERIES = 4


class MetricsSource:
    """Reads latest values and time series from the metrics process (read only), through the
    metrics part's own client, and turns "unavailable" into an honest note for the page."""

    def __init__(self, socket_path: Path, timeout_s: float = TIMEOUT_S) -> None:
        self.socket_path = socket_path
        self._client = MetricsClient(socket_path, timeout_s=timeout_s)

    def close(self) -> None:
        self._client.close()

    def _get(self, path: str, params: dict[str, str]) -> Any:
        return self._client.get_json(path, {k: [v] for k, v in params.items()})

    def latest(self, agent_ids: Sequence[str]) -> tuple[dict[str, dict[str, float | None]], str | None]:
        """Latest cpu, memory and rates per agent; stale agents get None values (shown as '—')."""
        try:
            body = self._get("/latest", {"agents": ",".join(agent_ids)})
        except MetricsUnavailable as exc:
            return {}, f"Metrics unavailable: {exc}."
        agents = body.get("agents") if isinstance(body, dict) else None
        if not isinstance(agents, dict):
            return {}, "Metrics unavailable: unexpected answer from the metrics process."
        out: dict[str, dict[str, float | None]] = {}
        for agent_id, values in agents.items():
            if isinstance(values, dict):
                out[str(agent_id)] = {
                    k: (float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None)
                    for k, v in values.items()
                }
        return out, None

    def series(
        self, agent_id: str, metrics: Sequence[str], start: float, end: float
    ) -> tuple[dict[str, list[Point]], str | None]:
        """One time series per metric for one agent; gaps are None. The queries run concurrently (the
        metrics process answers each from its own DuckDB cursor), so a page costs about one query."""

        def one(metric: str) -> list[Point]:
            params = {"metric": metric, "agent": agent_id, "start": f"{start:.3f}", "end": f"{end:.3f}"}
            body = self._get("/query", params)
            points = body.get("points") if isinstance(body, dict) else None
            series: list[Point] = []
            for item in points or []:
                if isinstance(item, list | tuple) and len(item) == 2 and isinstance(item[0], int | float):
                    value = item[1]
                    series.append((float(item[0]), float(value) if isinstance(value, int | float) else None))
            return series

        if not self.socket_path.exists():
            return {}, "Charts unavailable: the metrics process is not running."
        out: dict[str, list[Point]] = {}
        with ThreadPoolExecutor(max_workers=min(PARALLEL_QUERIES, max(1, len(metrics)))) as pool:
            futures = {metric: pool.submit(one, metric) for metric in metrics}
            for metric, future in futures.items():
                try:
                    out[metric] = future.result()
                except MetricsUnavailable as exc:
                    return {}, f"Charts unavailable: {exc}."
        if not any(v is not None for s in out.values() for _, v in s):
            return out, "No metrics scraped for this agent in this range yet."
        return out, None


def from_app() -> MetricsSource:
    """The app's metrics source (created on first use), reading DATA_DIR/metrics.sock."""
    source = current_app.extensions.get(EXTENSION_KEY)
    if not isinstance(source, MetricsSource):
        settings = current_app.config["CTRLTOWER_SETTINGS"]
        source = MetricsSource(Path(settings.metrics_socket))
        current_app.extensions[EXTENSION_KEY] = source
    return source
