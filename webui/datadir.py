"""The server's data directory: every file name in it, defined once.

`ctrltower server --data-dir DIR` keeps its state here (embedded mode); the web workers, the metrics
process, `ctrltower token` and the lifecycle code all find files through these names, and replace a
file through `write_atomic` (also the CLI's rendered configs and repo files). The agent, which may not
import webui, has its own in agent/state.py with the same guarantees.
"""

from __future__ import annotations

import os
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


def write_atomic(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Replace `path` so readers see the old bytes or the new ones, never half a file: a staging file
    beside it (created with `mode`, owner-only by default: tokens and configs may hold secrets), fsynced,
    renamed over it, and the directory fsynced. A symlink at the staging path is refused, never
    followed; the staging file is removed if anything fails."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    if tmp.is_symlink():
        raise OSError(f"refusing to follow the symlink at {tmp}")
    tmp.unlink(missing_ok=True)  # left by a crash of this pid's predecessor
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
