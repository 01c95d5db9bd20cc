"""The agent's settings: one frozen model, built once by `ctrltower agent` and passed down."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field


class AgentSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    server: str = Field(description="base URL of the control plane, e.g. http://127.0.0.1:8080")
    enroll_token: str
    collector: Path = Field(description="the otelcol binary")
    config_path: Path = Field(description="where the collector's config lives; the agent owns this file")
    state_dir: Path
    labels: dict[str, str] = Field(default_factory=dict)
    metrics_host: str = "127.0.0.1"
    metrics_port: int | None = Field(default=None, description="None: no /metrics endpoint; 0: ephemeral")
    metrics_url: str | None = Field(
        default=None, description="the /metrics URL to tell the server; default: from the listen address"
    )
    poll_interval_s: float | None = Field(
        default=None, gt=0, description="None: follow the server's interval (15 s until it tells)"
    )
    telemetry_port: int | None = Field(
        default=None,
        description="the collector's internal metrics port (CTRLTOWER_TELEMETRY_PORT); None: pick",
    )
    health_timeout_s: float = Field(default=15.0, gt=0)
    health_settle_s: float = Field(
        default=1.0, ge=0, description="the collector must stay up this long after a start or reload"
    )
    http_timeout_s: float = Field(
        default=5.0, gt=0, description="per request to the server; the loop (supervision too) waits this long"
    )
    backoff_initial_s: float = Field(default=0.5, gt=0)
    backoff_max_s: float = Field(default=60.0, gt=0)
    restart_backoff_initial_s: float = Field(default=0.5, gt=0)
    restart_backoff_max_s: float = Field(default=30.0, gt=0)
    stop_timeout_s: float = Field(default=10.0, gt=0)
    hostname: str | None = None
    collector_env: tuple[str, ...] = Field(
        default=(),
        description="--collector-env values: NAME, PREFIX* or NAME=VALUE (agent/environment.py)",
    )

    @property
    def default_poll_interval_s(self) -> float:
        return self.poll_interval_s if self.poll_interval_s is not None else 15.0
