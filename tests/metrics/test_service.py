"""The metrics process end to end: targets read from a real state.db (the server's migrations),
real exporters, the scrape loop in real time with short intervals, queries over the Unix socket
with the real client, and a real process stopped with SIGTERM and restarted keeping its history."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from metrics.service import run_async
from metrics.settings import MetricsSettings
from tests.metrics.exporter import Exporter, exporters, wait_until
from tests.support.ready import wait_ready
from webui import datadir
from webui.metrics.client import MetricsClient, failing_agents, latest_values
from webui.metrics.process import StoreTargets
from webui.store import Store
from webui.store.db import migrate

ROOT = Path(__file__).resolve().parents[2]
FAST = {
    "interval_s": 0.3,
    "timeout_s": 1.0,
    "flush_every_s": 0.1,
    "rollup_every_s": 0.5,
    "retention_every_s": 0.5,
    "online_within_s": 60.0,
}


def add_agent(db: Path, agent_id: str, url: str, group: str | None, last_seen: float | None = None) -> None:
    with sqlite3.connect(db) as conn:
        conn.execute(
            "INSERT INTO agents (id, instance_id, hostname, metrics_url, group_name, token_hash,"
            " registered_at, last_seen) VALUES (?, ?, ?, ?, ?, 'x', ?, ?)",
            (
                agent_id,
                "inst-" + agent_id,
                agent_id + ".host",
                url,
                group,
                time.time(),
                last_seen or time.time(),
            ),
        )


def add_apply(db: Path, agent_id: str, at: float, revision: str) -> None:
    with sqlite3.connect(db) as conn:
        conn.execute(
            "INSERT INTO agent_events (agent_id, at, kind, revision) VALUES (?, ?, 'applied', ?)",
            (agent_id, at, revision),
        )


class Counting(Exporter):
    """Counters that grow with real time at known rates."""

    def __init__(self, logs_per_s: float) -> None:
        super().__init__({})
        self.t0 = time.time()
        self.logs_per_s = logs_per_s

    def _serve(self, h):  # type: ignore[no-untyped-def]
        el = time.time() - self.t0
        self.values = {"cpu": 0.1 * el, "memory": 1e8, "logs:accepted": self.logs_per_s * el}
        super()._serve(h)


@pytest.fixture
def running(tmp_path: Path) -> Iterator[tuple[MetricsSettings, MetricsClient]]:
    settings = MetricsSettings(data_dir=tmp_path, **FAST)  # type: ignore[arg-type]
    targets = StoreTargets(Store.open(datadir.state_db(tmp_path)))  # as webui/metrics/process.py wires it
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    thread = threading.Thread(
        target=loop.run_until_complete, args=(run_async(settings, stop, targets),), daemon=True
    )
    thread.start()
    assert wait_until(settings.socket_path.exists, 10)
    client = MetricsClient(settings.socket_path, timeout_s=5)
    try:
        yield settings, client
    finally:
        client.close()
        loop.call_soon_threadsafe(stop.set)
        thread.join(15)
        assert not thread.is_alive()
        loop.close()
        targets.close()
    assert not settings.socket_path.exists()


def test_loop_scrapes_online_agents_and_serves_queries(
    running: tuple[MetricsSettings, MetricsClient],
) -> None:
    settings, client = running
    db = datadir.state_db(settings.data_dir)
    good = [Counting(100.0), Counting(50.0)]
    hang = Exporter(mode="hang")
    offline = Counting(1.0)
    try:
        add_agent(db, "g1", good[0].url, "edge")
        add_agent(db, "g2", good[1].url, "edge")
        add_agent(db, "hung", hang.url, "edge")
        add_agent(db, "old", offline.url, "edge", last_seen=time.time() - 3600)  # offline: not scraped
        add_apply(db, "g1", time.time(), "abcdef1")

        def rates_ready() -> bool:
            latest = client.latest(["g1", "g2"])
            return all(latest[a]["logs_in"] is not None for a in ("g1", "g2"))

        assert wait_until(rates_ready, 15)
        assert wait_until(lambda: "hung" in client.failing(), 15)
        latest = client.latest(["g1", "g2", "hung"])
        # wiring, in real time: loose bounds (exact rates are tested with a driven clock elsewhere)
        assert latest["g1"]["logs_in"] == pytest.approx(100.0, rel=0.25)
        assert latest["g2"]["logs_in"] == pytest.approx(50.0, rel=0.25)
        assert latest["hung"]["stale"] is True and latest["hung"]["logs_in"] is None
        assert offline.hits == 0
        assert failing_agents(settings) == {"hung"}
        assert latest_values(settings, ["g1"])["g1"]["memory"] == 1e8

        # no pile-up: the hanging agent's scrape is still running when its next turn comes
        stats = client.get("/stats")[1]
        assert stats["skipped"] > 0
        hits_g1 = good[0].hits
        assert wait_until(lambda: good[0].hits >= hits_g1 + 3, 10)  # others keep their cadence

        status, res = client.get("/query", {"agent": ["g1"], "metric": ["logs_in"], "start": ["-5m"]})
        assert status == 200 and res["resolution"] == "raw"
        vals = [v for _, v in res["points"] if v is not None]
        # real time on a loaded machine: scrape timestamps jitter, so judge the median bucket
        assert vals and statistics.median(vals) == pytest.approx(100.0, rel=0.15)
        assert [a["revision"] for a in res["annotations"]] == ["abcdef1"]
        status, res = client.get("/query", {"group": ["edge"], "metric": ["logs_in"], "start": ["-5m"]})
        assert status == 200 and res["annotations"][0]["agent"] == "g1"
        status, top = client.get("/top", {"metric": ["logs_in"], "n": ["1"]})
        assert status == 200 and top["items"][0]["agent"] == "g1"
        status, health = client.get("/health", {"agents": ["hung,g1"]})
        assert health["agents"]["hung"]["failing"] is True
        assert "timed out" in health["agents"]["hung"]["last_error"]
        assert health["agents"]["g1"]["consecutive_failures"] == 0

        status, err = client.get("/query", {"agent": ["g1"], "metric": ["bogus"]})
        assert status == 400 and err["error"]["code"] == "unknown_metric"
        status, err = client.get("/query", {"metric": ["cpu"], "start": ["yesterday"]})
        assert status == 400 and "start" in err["error"]["message"]
        status, err = client.get("/query", {"metric": ["cpu"], "start": ["-1d"], "step": ["1s"]})
        assert status == 400 and "points" in err["error"]["message"]
        status, err = client.get("/nope")
        assert status == 404 and err["error"]["code"] == "not_found"
    finally:
        for e in [*good, hang, offline]:
            e.close()


def test_process_restart_keeps_history(tmp_path: Path) -> None:
    """The real process: started, scraping, stopped with SIGTERM, started again: history is kept."""
    settings = MetricsSettings(data_dir=tmp_path, **FAST)  # type: ignore[arg-type]
    migrate(datadir.state_db(tmp_path))
    code = (  # the wiring of webui/metrics/process.py, with the test's settings
        "import sys; from metrics.settings import MetricsSettings; from metrics.service import run; "
        "from webui.metrics.process import StoreTargets; from webui.store import Store; "
        "m = MetricsSettings.model_validate_json(sys.argv[1]); "
        "run(m, StoreTargets(Store.open(m.data_dir / 'state.db')))"
    )

    log = tmp_path / "metrics.log"

    def start() -> subprocess.Popen[bytes]:
        with log.open("ab") as err:
            proc = subprocess.Popen(
                [sys.executable, "-c", code, settings.model_dump_json()], cwd=ROOT, stdout=err, stderr=err
            )
        wait_ready(proc, settings.socket_path.exists, "metrics process", log.read_text)
        return proc

    def stop(proc: subprocess.Popen[bytes]) -> None:
        os.kill(proc.pid, signal.SIGTERM)
        assert proc.wait(20) == 0, log.read_text()
        assert not settings.socket_path.exists()

    with exporters({}) as (exp,):
        add_agent(datadir.state_db(tmp_path), "a", exp.url, "edge")
        exp.values = {"cpu": 1.0, "memory": 7e7}
        proc = start()
        try:
            with MetricsClient(settings.socket_path) as client:
                assert wait_until(lambda: client.get("/stats")[1]["rows"]["raw"] >= 3, 15)
        finally:
            stop(proc)
        proc = start()
        try:
            with MetricsClient(settings.socket_path) as client:
                rows = client.get("/stats")[1]["rows"]["raw"]
                assert rows >= 3  # before its first new scrape lands, the old rows are there
                status, res = client.get("/query", {"agent": ["a"], "metric": ["memory"], "start": ["-10m"]})
                assert status == 200 and any(v == 7e7 for _, v in res["points"])
        finally:
            stop(proc)
