"""Helpers for the agent tests: collector configs written by hand, log writers, waiting."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from tests.support.ready import patience

T = TypeVar("T")


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


def wait_until(predicate: Callable[[], T], timeout: float, interval: float = 0.05, what: str = "") -> T:
    """Poll `predicate` until it returns a truthy value; fail with `what` on timeout.

    `timeout` is a nominal bound, scaled for a loaded machine (tests.support.ready.patience).
    """
    timeout = patience(timeout)
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what or predicate}")
        time.sleep(interval)
