"""The server's data directory: every file name in it, defined once.

`ctrltower server --data-dir DIR` keeps its state here (embedded mode); the web workers, the metrics
process, `ctrltower token` and the lifecycle code all find files through these names, and replace a
file through `fsio.atomic.atomic_write`, the one atomic write the agent and the CLI use too.
"""

from __future__ import annotations

from pathlib import Path

# DuckDB of scraped metrics and the metrics process's internal endpoint: named by the metrics package,
# which owns them (and may not import webui).
from metrics.settings import METRICS_DB as METRICS_DB
from metrics.settings import METRICS_SOCKET as METRICS_SOCKET

STATE_DB = "state.db"  # SQLite: the server's state (a cache of Git plus live agent state)
ADMIN_TOKEN = "admin.token"  # bootstrap tokens, written 0600 on first start
ENROLL_TOKEN = "enroll.token"
SECRET_KEY = "secret.key"  # the Flask session key shared by the workers


def state_db(data_dir: Path) -> Path:
    return data_dir / STATE_DB


def metrics_socket(data_dir: Path) -> Path:
    return data_dir / METRICS_SOCKET
