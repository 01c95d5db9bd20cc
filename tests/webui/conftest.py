"""Fixtures for the server tests: an in-process server with a settable clock."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.server import InProcessServer, live_server  # noqa: F401  (fixture)


class Clock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def failing() -> set[str]:
    """Agent ids the (simulated) metrics process reports as failing scrapes."""
    return set()


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest) -> Iterator[str | None]:
    """The store backend: None (SQLite in the data dir) or a PostgreSQL URL with a fresh schema.

    Every test using `srv` runs on both, so SQL added to webui/store is checked on both engines.
    """
    if request.param == "sqlite":
        yield None
    else:
        yield request.getfixturevalue("database_url")


@pytest.fixture
def srv(tmp_path: Path, clock: Clock, failing: set[str], backend: str | None) -> Iterator[InProcessServer]:
    server = InProcessServer(
        tmp_path / "data",
        poll_interval_s=10.0,
        clock=clock,
        scrape_failing=lambda: failing,
        database_url=backend,
    )
    yield server
    server.close()
