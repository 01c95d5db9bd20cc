"""Proof of sharded scraping into DuckLake: three real replicas (`--metrics-lake` on a shared directory,
the catalog in the test's PostgreSQL schema) scrape twelve agent-like exporters.

- every agent is scraped by exactly one replica (the scraper names itself in its User-Agent), and
  the replicas' shard sets are disjoint and cover all shards;
- any replica answers a metrics query with the same result (the lake is shared), and shows an agent
  whose scrapes fail `degraded` whichever replica scrapes it;
- `kill -9` of one replica: its shards move to the survivors, every agent is scraped again, the
  first scrape by the new owner comes no sooner than the previous owner's slot (no agent scraped twice
  in one interval) and carries a rate computed against the previous owner's last scrape (the baselines
  are shared: no gap in the series beyond the move, no spike).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import httpx
import pytest

from metrics.lake import open_lake
from tests.metrics.exporter import Exporter
from tests.support.cluster import ScaleOut, wait_for
from tests.support.server import auth
from webui.metrics.client import MetricsClient

pytestmark = [pytest.mark.slow]
INTERVAL = 1.0
AGENTS = 12


class RecordingExporter(Exporter):
    """An exporter that remembers who scraped it and when (wall clock, User-Agent)."""

    def __init__(self) -> None:
        self.scrapes: list[tuple[float, str]] = []
        self._lock = threading.Lock()
        super().__init__({})

    def _serve(self, h: BaseHTTPRequestHandler) -> None:
        with self._lock:
            self.scrapes.append((time.time(), h.headers.get("User-Agent", "")))
        super()._serve(h)

    def scrapers(self, since: float = 0.0) -> list[str]:
        with self._lock:
            return [ua for t, ua in self.scrapes if t >= since]


@pytest.fixture
def fleet() -> Iterator[list[RecordingExporter]]:
    t0 = time.time()
    made = [RecordingExporter() for _ in range(AGENTS)]
    for e in made:
        e.values = {"cpu": 0.0, "memory": 1e7, "logs:accepted": 0.0}
    stop = threading.Event()

    def tick() -> None:  # counters grow at a steady 100 lines/s: any spike or reset would show
        while not stop.wait(0.05):
            el = time.time() - t0
            for e in made:
                e.values = {"cpu": 0.1 * el, "memory": 1e7, "logs:accepted": 100.0 * el}

    ticker = threading.Thread(target=tick, daemon=True)
    ticker.start()
    try:
        yield made
    finally:
        stop.set()
        ticker.join(5)
        for e in made:
            e.close()


def test_sharded_scrapes_into_the_lake_survive_kill_9(
    tmp_path: Path, database_url: str, fleet: list[RecordingExporter]
) -> None:
    lake = tmp_path / "lake"
    with ScaleOut(
        tmp_path,
        database_url,
        replicas=3,
        poll_interval_s=60,  # registered agents stay online (3 intervals) without status reports
        metrics=True,
        metrics_interval_s=INTERVAL,
        # a wide gap limit: on a loaded machine the survivors may take over later than 3.5 intervals
        # after the victim's last scrape, which would be a gap by design and hide what is tested here
        # (the new owner computes its first rate against the victim's shared baseline)
        extra_args=("--metrics-lake", str(lake), "--metrics-max-gap", "60"),
    ) as so:
        socks = [r.wait_metrics() for r in so.replicas]
        ids: list[str] = []
        with httpx.Client(base_url=so.lb_url, timeout=10) as lb:
            for i, e in enumerate(fleet):
                r = lb.post(
                    "/api/agent/v1/agents",
                    json={"instance_id": f"lake-{i:03d}", "hostname": f"h{i}", "metrics_url": e.url},
                    headers=auth(so.enroll_token),
                )
                assert r.status_code in (200, 201), r.text
                ids.append(r.json()["agent_id"])

        def stats(sock: Path) -> dict[str, Any]:
            with MetricsClient(sock) as c:
                return dict(c.get("/stats")[1])

        def shard_sets() -> list[set[int]] | None:
            sets = [set(stats(s)["shards"]["held"]) for s in socks]
            sizes = [len(x) for x in sets]
            # settled: all 64 held, none above its fair share ceil(64 / 3) = 22 (replicas that started
            # first hand shards over to the later ones while they balance)
            return sets if sum(sizes) == 64 and all(sizes) and max(sizes) <= 22 else None

        sets = wait_for(shard_sets, "the replicas share all 64 shards fairly", 30)
        assert set().union(*sets) == set(range(64)) and sum(len(x) for x in sets) == 64  # disjoint
        # a scrape the previous owner started before the hand-over may still land within an interval
        settled = time.time() + INTERVAL

        # every agent scraped, each by one replica only, once the shards have settled
        wait_for(
            lambda: all(len(e.scrapers(since=settled)) >= 3 for e in fleet),
            "three scrapes of every agent",
            30,
        )
        assert shard_sets() == sets, "shards moved although no replica came or went"
        for e in fleet:
            assert len(set(e.scrapers(since=settled))) == 1, e.scrapers()

        # any replica answers a metrics query with the same result
        viewer = so.create_token("viewer")

        # a closed window (unix seconds) that has samples of every agent: the same answer everywhere
        wait_for(lambda: all(len(e.scrapes) >= 10 for e in fleet), "ten scrapes of every agent", 60)
        window_end = float(int(time.time()))
        params = {"metric": "logs_in", "start": str(window_end - 10), "end": str(window_end), "step": "2"}

        last: list[Any] = []

        def fleet_rates() -> list[Any] | None:
            answers = []
            for rep in so.replicas:
                r = httpx.get(
                    rep.base_url + "/api/v1/metrics/query", params=params, headers=auth(viewer), timeout=10
                )
                last[:] = [r.status_code, r.text[:2000]]
                if r.status_code != 200:
                    return None
                answers.append(r.json()["points"])
            # the window's last rows may reach the lake a flush later on one replica: wait until all agree
            if answers[0] != answers[1] or answers[1] != answers[2]:
                return None
            return answers if sum(v is not None for _, v in answers[0]) >= 3 else None

        try:
            answers = wait_for(fleet_rates, "the window's samples readable on every replica", 30)
        except AssertionError:
            raise AssertionError(f"last answer: {last}") from None
        assert answers[0] == answers[1] == answers[2]
        # the fleet's rate in a bucket every agent's scrapes cover (edge buckets hold part of them)
        assert max(v for _, v in answers[0] if v is not None) == pytest.approx(100.0 * AGENTS, rel=0.25)

        # an agent whose scrapes fail is degraded on every replica, not only on the one scraping it
        fleet[0].mode = "http500"

        def degraded_everywhere() -> bool:
            return all(
                httpx.get(rep.base_url + f"/api/v1/agents/{ids[0]}", headers=auth(viewer), timeout=10)
                .json()
                .get("status")
                == "degraded"
                for rep in so.replicas
            )

        wait_for(degraded_everywhere, "the failing agent degraded on all three replicas", 30)
        fleet[0].mode = "ok"  # and back: scraped fine again (a fresh baseline) before the kill below
        wait_for(lambda: not degraded_everywhere(), "the agent no longer degraded", 30)
        recovered = time.time()
        wait_for(lambda: len(fleet[0].scrapers(since=recovered)) >= 2, "two good scrapes again", 30)

        # kill -9 the replica holding the most agents; its shards move to the others
        owner = {e.url: e.scrapers()[-1] for e in fleet}
        victim_ua = max(set(owner.values()), key=lambda ua: list(owner.values()).count(ua))
        victim = next(i for i, s in enumerate(socks) if victim_ua.endswith(f":{stats(s)['pid']})"))
        moved = [e for e in fleet if owner[e.url] == victim_ua]
        killed_at = time.time()
        so.replicas[victim].kill()
        survivors = [s for i, s in enumerate(socks) if i != victim]
        wait_for(
            lambda: sum(len(stats(s)["shards"]["held"]) for s in survivors) == 64,
            "the survivors hold all 64 shards",
            30,
        )
        wait_for(
            lambda: all(len(e.scrapers(since=killed_at)) >= 2 for e in fleet),
            "every agent scraped again after the kill",
            30,
        )
        for e in moved:
            with e._lock:
                before = [t for t, ua in e.scrapes if ua == victim_ua]
                after = [(t, ua) for t, ua in e.scrapes if t > killed_at and ua != victim_ua]
            assert len({ua for _, ua in after}) == 1  # one new owner
            # never two scrapes in one interval: the new owner waits for the agent's slot
            assert after[0][0] - before[-1] >= 0.5 * INTERVAL, (before[-1], after[0][0])

        # the new owner's first sample has a rate against the old owner's last scrape: no gap, no spike
        con = open_lake(database_url, str(lake), _schema(database_url))
        try:

            def first_rows() -> list[tuple[Any, ...]] | None:
                rows = []
                for e, agent in zip(fleet, ids, strict=True):
                    if e not in moved:
                        continue
                    row = con.execute(
                        "SELECT ts, dt, logs_in FROM raw WHERE agent = ? AND ts > ? ORDER BY ts LIMIT 1",
                        [agent, killed_at],
                    ).fetchone()
                    if row is None:
                        return None
                    rows.append(row)
                return rows

            rows = wait_for(first_rows, "the moved agents' first samples in the lake", 30)
            for _ts, dt, logs_in in rows:
                assert dt is not None and dt > 0, rows  # a rate, not a gap
                assert logs_in / dt == pytest.approx(100.0, rel=0.25), rows  # no spike
        finally:
            con.close()


def _schema(url: str) -> str:
    return url.rsplit("search_path%3D", 1)[-1]
