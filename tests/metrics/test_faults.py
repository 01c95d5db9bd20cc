"""Misbehaving targets (hang, garbage, 10 MB, dropped or truncated connection, HTTP 500, bad URL)
cost one bounded task each and never stall the healthy ones."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from metrics.targets import ScrapeTarget
from tests.metrics.exporter import InFlight, exporters
from tests.metrics.helpers import Clock, make

GOOD = {"cpu": 1.0, "memory": 1e8, "logs:accepted": 5.0}
BAD = ["hang", "garbage", "huge", "drop", "truncate", "http500"]


def test_bad_targets_do_not_stall_good_ones(tmp_path: Path) -> None:
    clock = Clock()
    settings, _store, scraper = make(tmp_path, clock, timeout_s=1.5)
    specs = [{"mode": m} for m in BAD] + [{"values": GOOD} for _ in range(6)]
    with exporters(*specs) as exps:
        targets = [ScrapeTarget(f"bad-{m}", e.url, None) for m, e in zip(BAD, exps, strict=False)]
        targets += [ScrapeTarget(f"good-{i}", e.url, None) for i, e in enumerate(exps[len(BAD) :])]
        targets.append(ScrapeTarget("bad-url", "https://127.0.0.1:1/metrics", None))
        targets.append(ScrapeTarget("bad-refused", "http://127.0.0.1:9/metrics", None))
        started = time.monotonic()
        asyncio.run(scraper.round(targets))
        took = time.monotonic() - started
    # the round is bounded by the timeout (the hanging target), not by the sum of the targets
    assert took < settings.timeout_s + 3.0
    for i in range(6):
        h = scraper.health[f"good-{i}"]
        assert h.failures == 0 and h.last_success is not None
        assert h.duration_s is not None and h.duration_s < settings.timeout_s / 2  # not behind the hang
    errors = {a: h.last_error or "" for a, h in scraper.health.items() if a.startswith("bad")}
    assert "timed out" in errors["bad-hang"]
    assert "no ctrltower_collector_" in errors["bad-garbage"]
    assert "exceeds" in errors["bad-huge"]
    assert errors["bad-drop"] and errors["bad-truncate"]
    assert errors["bad-http500"] == "HTTP 500"
    assert "only http://" in errors["bad-url"]
    assert errors["bad-refused"]
    assert scraper.flush() == 6  # only the good pages were stored


def test_round_without_targets_reads_state_db_as_empty(tmp_path: Path) -> None:
    _, _, scraper = make(tmp_path, Clock())
    asyncio.run(scraper.round())  # a new state.db, no agents yet: nothing to scrape, no error
    assert scraper.scrapes_ok == 0 and scraper.flush() == 0


@pytest.mark.parametrize("bound", [2, 3])
def test_concurrency_bound_holds_across_event_loops(tmp_path: Path, bound: int) -> None:
    """The exporters see exactly `bound` scrapes at once: never more (the bound), and that many (the
    scraper does scrape concurrently), in every event loop."""
    clock = Clock()
    _, _, scraper = make(tmp_path, clock, concurrency=bound, timeout_s=30.0)
    for k in range(2):  # each asyncio.run is a new loop; the semaphore must follow it
        gate = InFlight(hold_until=bound, expected=2 * bound + 1)
        with exporters(*[{"values": GOOD, "in_flight": gate} for _ in range(2 * bound + 1)]) as exps:
            targets = [ScrapeTarget(f"a{i}", e.url, None) for i, e in enumerate(exps)]
            clock.now += 15
            asyncio.run(scraper.round(targets))
        assert gate.peak == bound, f"loop {k}: {gate.peak} scrapes at once with concurrency={bound}"
    assert scraper.scrapes_ok == 2 * (2 * bound + 1) and scraper.scrapes_failed == 0


def test_host_names_are_resolved_and_cached(tmp_path: Path) -> None:
    clock = Clock()
    _, _, scraper = make(tmp_path, clock, timeout_s=1.0)  # bounds a resolver that never answers
    with exporters({"values": GOOD}) as (exp,):
        url = exp.url.replace("127.0.0.1", "localhost")  # may resolve to ::1 first: the next address is tried
        targets = [
            ScrapeTarget("named", url, None),
            ScrapeTarget("nowhere", "http://no-such-host.invalid/m", None),
        ]
        for _ in range(2):
            asyncio.run(scraper.round(targets))
            clock.now += 15
    assert scraper.health["named"].failures == 0 and scraper.scrapes_ok == 2
    assert scraper.health["nowhere"].failures == 2
    assert scraper._targets[url]._addrs[0] == "127.0.0.1"  # type: ignore[union-attr]
