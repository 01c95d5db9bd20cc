"""The HTTP client of the metrics process's internal endpoint (Unix socket DATA_DIR/metrics.sock).

Used by the Flask workers: the metrics API blueprint proxies through `MetricsClient.get`, the
server's agent views call `failing_agents(settings)` (scrape health -> `degraded`), the fleet page
calls `latest_values(settings, ids)`. When the metrics process is down these raise
MetricsUnavailable (a RetryLater); the convenience functions return empty results instead.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx

from metrics.settings import MetricsSettings
from schemas.errors import RetryLater
from webui.settings import ServerSettings


class MetricsUnavailable(RetryLater):
    """The metrics process did not answer (not started yet, restarting, or disabled)."""


def socket_of(settings: ServerSettings | MetricsSettings) -> Path:
    """The metrics process's socket, from the server's settings or the metrics process's own."""
    return settings.metrics_socket if isinstance(settings, ServerSettings) else settings.socket_path


class MetricsClient:
    """One httpx client over the Unix socket; thread-safe, kept per app (not per request)."""

    def __init__(self, socket_path: Path, *, timeout_s: float = 10.0) -> None:
        self.socket_path = socket_path
        self._client = httpx.Client(
            transport=httpx.HTTPTransport(uds=str(socket_path)),
            base_url="http://metrics",
            timeout=timeout_s,
        )

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> MetricsClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def get(self, path: str, params: Mapping[str, Sequence[str]] | None = None) -> tuple[int, Any]:
        """(status, JSON body) of GET `path`; 4xx bodies are the ErrorBody shape."""
        if not self.socket_path.exists():
            # (also spares httpcore's failed-connect path, which leaks the socket object)
            raise MetricsUnavailable(f"metrics process at {self.socket_path}: not running (no socket)")
        query = httpx.QueryParams([(k, v) for k, values in (params or {}).items() for v in values])
        try:
            resp = self._client.get(path, params=query)
            return resp.status_code, resp.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise MetricsUnavailable(f"metrics process at {self.socket_path}: {exc}") from exc

    def get_json(self, path: str, params: Mapping[str, Sequence[str]] | None = None) -> Any:
        status, body = self.get(path, params)
        if status != 200:
            message = body.get("error", {}).get("message") if isinstance(body, dict) else body
            raise MetricsUnavailable(f"metrics process answered {status}: {message}")
        return body

    def failing(self) -> list[str]:
        return list(self.get_json("/failing")["agents"])

    def latest(self, agent_ids: Sequence[str] | None = None) -> dict[str, dict[str, Any]]:
        params = {"agents": [",".join(agent_ids)]} if agent_ids else None
        return dict(self.get_json("/latest", params)["agents"])

    def sums(self, agent_ids: Sequence[str], since: float) -> dict[str, dict[str, float]]:
        """Per agent: seconds covered (`dt`) and each counter's increase since `since` (query.sums)."""
        params = {"agents": [",".join(agent_ids)], "since": [repr(since)]}
        return dict(self.get_json("/sums", params)["agents"])

    def health(self, agent_ids: Sequence[str] | None = None) -> dict[str, Any]:
        params = {"agents": [",".join(agent_ids)]} if agent_ids else None
        return dict(self.get_json("/health", params)["agents"])


def failing_agents(settings: ServerSettings | MetricsSettings) -> Collection[str]:
    """Ids of agents whose recent scrapes all failed (`degraded`); empty if the process is down."""
    path = socket_of(settings)
    if not path.exists():
        return set()
    try:
        with MetricsClient(path, timeout_s=1.0) as client:
            return set(client.failing())
    except MetricsUnavailable:
        return set()


def latest_values(
    settings: ServerSettings | MetricsSettings, agent_ids: Sequence[str]
) -> dict[str, dict[str, Any]]:
    """Latest cpu, memory and rates per agent (stale agents: values None); empty if unavailable."""
    path = socket_of(settings)
    if not path.exists() or not agent_ids:
        return {}
    try:
        with MetricsClient(path, timeout_s=2.0) as client:
            return client.latest(list(agent_ids))
    except MetricsUnavailable:
        return {}
