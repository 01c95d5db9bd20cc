"""Helpers for the agent tests: collector configs written by hand, log writers, waiting (for the one
agent's view on the server, too)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx

from schemas.api import AgentView
from tests.support.ready import wait_until
from tests.support.server import auth


def collector_config(
    include: str,
    endpoint: str,
    *,
    telemetry_port: str = "${env:CTRLTOWER_TELEMETRY_PORT:-8888}",
    extra: str = "",
) -> str:
    """filelog (from the beginning) -> batch -> otlphttp, internal metrics on loopback.

    `extra` is inserted into the filelog receiver's config (e.g. an unknown key the collector rejects).
    """
    return f"""receivers:
  filelog:
    include: ["{include}"]
    start_at: beginning
    poll_interval: 100ms
{extra}processors:
  batch:
    timeout: 100ms
exporters:
  otlphttp:
    endpoint: {endpoint}
    retry_on_failure:
      initial_interval: 100ms
      max_interval: 500ms
service:
  telemetry:
    logs:
      level: warn
    metrics:
      readers:
        - pull:
            exporter:
              prometheus:
                host: 127.0.0.1
                port: {telemetry_port}
  pipelines:
    logs:
      receivers: [filelog]
      processors: [batch]
      exporters: [otlphttp]
"""


def write_lines(path: Path, prefix: str, n: int) -> list[str]:
    lines = [f"{prefix} {i}" for i in range(n)]
    with path.open("a") as f:
        f.write("".join(line + "\n" for line in lines))
    return lines


def only_agent(base_url: str, token: str) -> AgentView | None:
    """The first agent the server lists (tests with one agent), or None (none yet, or the server away)."""
    r = httpx.get(f"{base_url}/api/v1/agents", headers=auth(token), timeout=10)
    items = r.json()["items"] if r.status_code == 200 else []
    return AgentView.model_validate(items[0]) if items else None


def wait_only_agent(
    base_url: str,
    token: str,
    what: str,
    check: Callable[[AgentView], bool],
    timeout: float,
    log: Callable[[], str],
) -> AgentView:
    """Poll only_agent until `check` holds; on timeout fail with the last view and the agent's `log()`."""

    def probe() -> AgentView | None:
        v = only_agent(base_url, token)
        return v if v is not None and check(v) else None

    try:
        return wait_until(probe, timeout, interval=0.2, what=what)
    except AssertionError as exc:
        last = only_agent(base_url, token)
        raise AssertionError(f"{exc}\nlast view: {last}\nagent log:\n{log()}") from None
