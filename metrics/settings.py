"""Settings of the metrics process: one frozen model built by the entry point and passed down."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

DAY = 86400.0
# The metrics process's own files in the server's data dir (webui/datadir.py lists them with the rest).
METRICS_DB = "metrics.duckdb"  # DuckDB: scraped metrics, owned by the metrics process
METRICS_SOCKET = "metrics.sock"  # the metrics process's internal HTTP endpoint


class MetricsSettings(BaseModel):
    """Scrape cadence, limits and retention. Defaults are the production values; tests shorten them."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    data_dir: Path
    interval_s: float = Field(default=15.0, gt=0, description="scrape interval per agent")
    jitter: bool = Field(default=True, description="spread targets over the interval (stable per agent)")
    concurrency: int = Field(default=256, ge=1, le=10000, description="scrapes in flight at most")
    timeout_s: float = Field(default=5.0, gt=0, description="whole-scrape deadline")
    max_body_bytes: int = Field(default=2 * 1024 * 1024, ge=1024, description="larger pages are refused")
    online_within_s: float = Field(default=45.0, gt=0, description="agents seen this recently are scraped")
    max_gap_intervals: float = Field(
        default=3.5, gt=1, description="two scrapes further apart than this many intervals leave a gap"
    )
    flush_every_s: float = Field(default=1.0, gt=0, description="buffered samples are written this often")
    rollup_every_s: float = Field(default=30.0, gt=0)
    retention_every_s: float = Field(default=600.0, gt=0)
    raw_retention_s: float = Field(default=7 * DAY, gt=0)
    minute_retention_s: float = Field(default=35 * DAY, gt=0)
    hour_retention_s: float = Field(default=400 * DAY, gt=0)
    duckdb_memory_limit: str = Field(
        default="1GB", pattern=r"^\d+(\.\d+)?\s*[KMGT]?i?B$", description="DuckDB's memory cap"
    )
    failing_after: int = Field(default=2, ge=1, description="consecutive failed scrapes that make it failing")
    database_url: str | None = Field(
        default=None,
        description="scale-out: PostgreSQL (shard leases, baselines, scrape health)",
    )
    lake_path: str | None = Field(
        default=None, description="scale-out: DuckLake data path (directory or s3://bucket/prefix)"
    )
    shards: int = Field(default=64, ge=1, le=4096, description="scale-out: agents are split into this many")
    lake_flush_every_s: float = Field(
        default=5.0,
        gt=0,
        description="scale-out: rows go to the lake this often (each flush is a Parquet file and a catalog "
        "commit); baselines are still saved every flush_every_s",
    )

    @property
    def scale_out(self) -> bool:
        return self.database_url is not None and self.lake_path is not None

    @property
    def db_path(self) -> Path:
        return self.data_dir / METRICS_DB

    @property
    def socket_path(self) -> Path:
        return self.data_dir / METRICS_SOCKET

    @property
    def max_gap_s(self) -> float:
        return self.interval_s * self.max_gap_intervals

    @property
    def stale_after_s(self) -> float:
        """No successful scrape for this long: the agent's latest values are stale (null), not zero."""
        return 2 * self.interval_s + self.timeout_s

    @property
    def rollup_lag_s(self) -> float:
        """A minute is rolled up only when no scrape in flight can still land in it."""
        return self.timeout_s + 2 * self.flush_every_s + 1.0
