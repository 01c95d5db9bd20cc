"""Server settings: one frozen model, built once by the entry point (CLI or tests) and passed down."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from webui import datadir

SETTINGS_KEY = "CTRLTOWER_SETTINGS"  # where create_app keeps the settings (app.config)


class ServerSettings(BaseModel):
    """Everything `ctrltower server` needs. No environment lookups below this object."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    data_dir: Path
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    workers: int = Field(default=2, ge=1, le=64, description="granian worker processes")
    threads: int = Field(default=2, ge=1, le=64, description="blocking threads per worker")
    poll_interval_s: float = Field(default=15.0, gt=0, description="what agents are told to poll at")
    offline_after_intervals: float = Field(
        default=3.0, gt=0, description="silence that makes an agent offline"
    )
    max_body_bytes: int = Field(default=16 * 1024 * 1024, ge=1024, description="request body limit")
    max_collector_bytes: int = Field(
        default=512 * 1024 * 1024, ge=1024, description="body limit of a collector build upload"
    )
    metrics: bool = Field(
        default=True, description="mount webui.metrics.api and start the metrics process, if they exist"
    )
    metrics_interval_s: float | None = Field(
        default=None, gt=0, description="scrape interval of the metrics process (None: its default)"
    )
    metrics_max_gap_intervals: float | None = Field(
        default=None, gt=1, description="scrapes this many intervals apart leave a gap (None: 3.5)"
    )
    ui: bool = Field(default=True, description="mount the web UI (webui.ui.views), if it exists")
    retention_days: float = Field(
        default=30.0, gt=0, description="agent events, finished commands and reconcile runs kept this long"
    )
    rollout_tick_s: float = Field(
        default=5.0, gt=0, le=3600, description="how often the rollout controller looks at active rollouts"
    )
    rollout_lease_s: float = Field(
        default=30.0, gt=0, le=86400, description="a dead controller's lease expires after this long"
    )
    secret_key: str | None = Field(default=None, description="Flask session key; default: DIR/secret.key")
    metrics_lake: str | None = Field(
        default=None,
        description="with database_url: metrics in DuckLake (catalog in that PostgreSQL) at this data path",
    )
    metrics_shards: int = Field(default=64, ge=1, le=4096, description="scrape shards (scale-out)")
    database_url: str | None = Field(
        default=None,
        description="PostgreSQL URL (scale-out mode): all state there, shared by every replica; "
        "None: SQLite in DIR/state.db",
    )
    scrape_allow: tuple[str, ...] = Field(
        default=(),
        description="hosts and IP networks (CIDR) an agent may announce as its metrics host; any other "
        "announced host is replaced by the address the agent's registration came from",
    )
    behind_proxy: bool = Field(
        default=False,
        description="trust X-Forwarded-For and X-Forwarded-Proto from one reverse proxy in front "
        "(client address for scrape URLs, https for the Secure session cookie)",
    )

    @property
    def db_path(self) -> Path:
        return self.data_dir / datadir.STATE_DB

    @property
    def admin_token_path(self) -> Path:
        return self.data_dir / datadir.ADMIN_TOKEN

    @property
    def enroll_token_path(self) -> Path:
        return self.data_dir / datadir.ENROLL_TOKEN

    @property
    def metrics_socket(self) -> Path:
        return self.data_dir / datadir.METRICS_SOCKET

    @property
    def offline_after_s(self) -> float:
        return self.poll_interval_s * self.offline_after_intervals
