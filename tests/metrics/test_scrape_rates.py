"""Real exporters on 127.0.0.1 with known counter increments, scraped over HTTP into a real DuckDB
file; the scrape clock is injected so each round is exactly 15 s apart (no sleeping)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from metrics import query
from metrics.params import parse_range
from metrics.targets import ScrapeTarget
from tests.metrics.exporter import exporters
from tests.metrics.helpers import T0, Clock, make

RATE_A = 200.0  # logs accepted per second
CPU_A = 0.25  # cores
RATE_B = 40.0


def _q(**kw: str) -> dict[str, list[str]]:
    return {k: [v] for k, v in kw.items()}


def test_rates_across_reset_and_gap(tmp_path: Path) -> None:
    clock = Clock()
    settings, store, scraper = make(tmp_path, clock)
    with exporters({}, {}) as (a, b):
        targets = [ScrapeTarget("agent-a", a.url, "edge"), ScrapeTarget("agent-b", b.url, "edge")]
        since_reset = 0.0  # seconds of counting since agent-a's last restart
        for k in range(40):
            clock.now = T0 + 15 * k
            if k == 20:
                since_reset = 15.0  # agent-a restarted right after the previous scrape
            elapsed = 15 * k
            a.values = {
                "cpu": CPU_A * since_reset,
                "memory": 1e8 + k,
                "logs:accepted": RATE_A * since_reset,
                "logs:sent": RATE_A * since_reset * 0.5,
                "traces:send_failed": 2.0 * since_reset,
                "logs:send_failed": 1.0 * since_reset,
            }
            b.values = {"cpu": 1.0 * elapsed, "logs:accepted": RATE_B * elapsed, "memory": 5e7}
            b.mode = "http500" if 10 <= k < 20 else "ok"  # 150 s of failed scrapes: a gap
            asyncio.run(scraper.round(targets))
            since_reset += 15
            if k == 14:
                assert "agent-b" in scraper.failing()  # consecutive failures: degraded
        scraper.flush()
    assert scraper.scrapes_ok == 70 and scraper.scrapes_failed == 10
    assert "agent-b" not in scraper.failing()

    now = T0 + 15 * 40
    req = parse_range(_q(agent="agent-a", metric="logs_in", start=str(T0), end=str(T0 + 600), step="60"), now)
    res = query.range_query(store, req, now, settings)
    assert res["resolution"] == "raw" and res["step"] == 60
    values = [v for _, v in res["points"]]
    assert len(values) == 10
    assert None not in values, values  # the restart at k=20 leaves no gap in the minute series
    # the minute of the restart: the counter fell to 15 s worth, counted as an increase, not negative
    assert dict(res["points"])[T0 + 300] == pytest.approx(RATE_A, rel=0.01), values
    for v in values:  # every minute, including the one with the reset (k=20 at T0+300)
        assert v == pytest.approx(RATE_A, rel=0.01), values

    for metric, expected in (("cpu", CPU_A), ("logs_out", RATE_A / 2), ("send_failed", 3.0)):
        req = parse_range(
            _q(agent="agent-a", metric=metric, start=str(T0), end=str(T0 + 600), step="60"), now
        )
        for _, v in query.range_query(store, req, now, settings)["points"]:
            assert v == pytest.approx(expected, rel=0.01), metric

    req = parse_range(_q(agent="agent-a", metric="memory", start=str(T0), end=str(T0 + 60), step="60"), now)
    assert query.range_query(store, req, now, settings)["points"][0][1] == pytest.approx(1e8 + 1.5)

    # agent-b: failed from k=10 (T0+150) to k=19; k=20 (T0+300) has dt > max gap: no rate until k=21.
    req = parse_range(_q(agent="agent-b", metric="logs_in", start=str(T0), end=str(T0 + 600), step="30"), now)
    pts = dict(query.range_query(store, req, now, settings)["points"])
    assert pts[T0 + 30] == pytest.approx(RATE_B, rel=0.01)
    for t in (T0 + 150, T0 + 180, T0 + 240, T0 + 270):
        assert pts[t] is None, t  # a gap, not a zero
    assert pts[T0 + 300] == pytest.approx(RATE_B, rel=0.01)  # from k=21 only
    req = parse_range(_q(agent="agent-b", metric="logs_in", start=str(T0), end=str(T0 + 600), step="15"), now)
    pts = dict(query.range_query(store, req, now, settings)["points"])
    assert pts[T0 + 300] is None  # k=20: 165 s after the last good scrape, no rate
    assert pts[T0 + 315] == pytest.approx(RATE_B, rel=0.01)

    # the group aggregate sums agents' rates where they have data
    req = parse_range(_q(group="edge", metric="logs_in", start=str(T0), end=str(T0 + 600), step="30"), now)
    g = dict(query.range_query(store, req, now, settings)["points"])
    assert g[T0 + 30] == pytest.approx(RATE_A + RATE_B, rel=0.01)
    assert g[T0 + 180] == pytest.approx(RATE_A, rel=0.01)
    req = parse_range(
        _q(group="edge", metric="logs_in", start=str(T0), end=str(T0 + 600), step="30", agg="max"), now
    )
    assert dict(query.range_query(store, req, now, settings)["points"])[T0 + 30] == pytest.approx(
        RATE_A, rel=0.01
    )


def test_latest_goes_stale_on_failed_scrape_never_zero(tmp_path: Path) -> None:
    clock = Clock()
    settings, store, scraper = make(tmp_path, clock)
    with exporters({}, {}) as (a, b):
        targets = [ScrapeTarget("a", a.url, "g1"), ScrapeTarget("b", b.url, "g2")]
        for k in range(3):
            clock.now = T0 + 15 * k
            a.values = {"cpu": 0.5 * 15 * k, "memory": 3e8, "logs:accepted": 100.0 * 15 * k}
            b.values = {"cpu": 0.1 * 15 * k, "memory": 1e8, "logs:accepted": 10.0 * 15 * k}
            asyncio.run(scraper.round(targets))
        scraper.flush()
        now = clock.now
        latest = query.latest(store, now, settings.stale_after_s, failing=scraper.last_failed())
        assert latest["a"]["logs_in"] == pytest.approx(100.0)
        assert latest["a"]["cpu"] == pytest.approx(0.5)
        assert latest["a"]["memory"] == 3e8
        assert latest["b"]["stale"] is False
        top = query.top(store, "logs_in", 1, now, settings.stale_after_s)
        assert top == [{"agent": "a", "value": pytest.approx(100.0)}]
        assert [t["agent"] for t in query.top(store, "cpu", 5, now, 60, group="g2")] == ["b"]

        a.mode = "drop"
        clock.now = T0 + 45
        b.values = {"cpu": 0.1 * 45, "memory": 1e8, "logs:accepted": 10.0 * 45}
        asyncio.run(scraper.round(targets))
        scraper.flush()
        latest = query.latest(store, clock.now, settings.stale_after_s, failing=scraper.last_failed())
        assert latest["a"]["stale"] is True
        assert latest["a"]["logs_in"] is None and latest["a"]["memory"] is None
        assert latest["b"]["logs_in"] == pytest.approx(10.0)
        top = query.top(store, "logs_in", 1, clock.now, settings.stale_after_s, failing=scraper.last_failed())
        assert top == [{"agent": "b", "value": pytest.approx(10.0)}]  # stale "a" is left out
        # no scrape at all within the window: stale too; unknown agents are reported stale
        later = query.latest(store, T0 + 600, settings.stale_after_s, agents=["b", "nobody"])
        assert later["b"]["stale"] is True and later["b"]["cpu"] is None
        assert later["nobody"]["stale"] is True
        assert "a" not in later
        assert scraper.health["a"].last_error is not None


def test_quick_restart_keeps_the_rate_baseline(tmp_path: Path) -> None:
    """Baselines saved at shutdown: the first scrape after a restart within the gap limit has a rate."""
    clock = Clock()
    settings, store, scraper = make(tmp_path, clock)
    with exporters({}) as (a,):
        target = [ScrapeTarget("a", a.url, "g")]
        for k in range(2):
            clock.now = T0 + 15 * k
            a.values = {"cpu": 1.5 * k, "logs:accepted": 1500.0 * k}
            asyncio.run(scraper.round(target))
        scraper.flush()
        scraper.save_baselines()
        store.close()
        _, store, scraper = make(tmp_path, clock)  # the restarted process
        clock.now = T0 + 30
        a.values = {"cpu": 3.0, "logs:accepted": 3000.0}
        asyncio.run(scraper.round(target))
        scraper.flush()
    req = parse_range(
        _q(agent="a", metric="logs_in", start=str(T0 + 30), end=str(T0 + 45), step="15"), T0 + 45
    )
    assert query.range_query(store, req, T0 + 45, settings)["points"] == [(T0 + 30, pytest.approx(100.0))]
