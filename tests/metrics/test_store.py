"""The DuckDB store: rollups answer long ranges, retention deletes exactly what it should, and a
reopened file (a restarted server) keeps its history. Real DuckDB files in tmp_path."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from metrics import query
from metrics.params import parse_range
from metrics.rates import COUNTER_COLUMNS
from metrics.settings import DAY, MetricsSettings
from metrics.store import RAW_COLUMNS, MetricsStore

NOW = 1_790_006_400.0  # a whole hour
RATES = {"a1": 10.0, "a2": 30.0, "b1": 1000.0}
GROUPS = {"a1": "g", "a2": "g", "b1": "h"}


def rows(agent: str, start: float, end: float, every: float = 60.0) -> dict[str, np.ndarray[Any, Any]]:
    ts = np.arange(start, end, every)
    n = len(ts)
    cols: dict[str, np.ndarray[Any, Any]] = {
        "agent": np.array([agent] * n, dtype=object),
        "grp": np.array([GROUPS[agent]] * n, dtype=object),
        "ts": ts,
        "dt": np.full(n, every),
        "memory": np.full(n, 2e8),
        "up": np.ones(n),
    }
    for c in COUNTER_COLUMNS:
        cols[c] = np.full(n, 0.0)
    cols["logs_in"] = np.full(n, RATES[agent] * every)
    cols["cpu"] = np.full(n, 0.5 * every)
    return {c: cols[c] for c in RAW_COLUMNS}


def _q(**kw: str) -> dict[str, list[str]]:
    return {k: [v] for k, v in kw.items()}


@pytest.fixture
def filled(tmp_path: Path) -> tuple[MetricsSettings, MetricsStore]:
    settings = MetricsSettings(data_dir=tmp_path)
    store = MetricsStore(settings.db_path)
    for agent in RATES:
        store.insert_arrays(rows(agent, NOW - 8 * DAY, NOW))
    return settings, store


def test_seven_day_range_answers_from_rollups(filled: tuple[MetricsSettings, MetricsStore]) -> None:
    settings, store = filled
    done = store.rollup(NOW, settings.rollup_lag_s)
    assert done[60] == 3 * 8 * 1440 - 3  # every minute but the newest (within the rollup lag)
    assert done[3600] == 3 * (8 * 24 - 1)  # every complete hour of minutes
    assert store.rollup(NOW, settings.rollup_lag_s) == {60: 0, 3600: 0}  # idempotent
    # Drop every raw row the rollups cover: the 7-day answer must not need them.
    with store.cursor() as cur:
        cur.execute("DELETE FROM raw WHERE ts < ?", [NOW - 3600])
    req = parse_range(_q(group="g", metric="logs_in", start="now-7d", end="now"), NOW)
    res = query.range_query(store, req, NOW, settings)
    assert res["resolution"] == "1h"
    assert res["step"] % 3600 == 0
    values = [v for _, v in res["points"]]
    assert len(values) == 7 * 24 * 3600 / res["step"]
    assert all(v == pytest.approx(RATES["a1"] + RATES["a2"]) for v in values)
    fleet = query.range_query(store, parse_range(_q(metric="cpu", start="-7d"), NOW), NOW, settings)
    assert all(v == pytest.approx(1.5) for _, v in fleet["points"])  # three agents at 0.5 cores
    mem = query.range_query(
        store, parse_range(_q(agent="b1", metric="memory", start="-7d"), NOW), NOW, settings
    )
    assert all(v == pytest.approx(2e8) for _, v in mem["points"])


def test_resolution_follows_range(filled: tuple[MetricsSettings, MetricsStore]) -> None:
    settings, store = filled
    store.rollup(NOW, settings.rollup_lag_s)
    for span, expected in (("1h", "raw"), ("6h", "raw"), ("24h", "1m"), ("3d", "1m"), ("4d", "1h")):
        req = parse_range(_q(agent="a2", metric="logs_in", start=f"-{span}", step="1h"), NOW)
        res = query.range_query(store, req, NOW, settings)
        assert res["resolution"] == expected, span
        assert all(v == pytest.approx(30.0) for _, v in res["points"]), span
    # the minute rollup plus the raw tail beyond its watermark reach `end`
    req = parse_range(_q(agent="a2", metric="logs_in", start="-24h", step="60"), NOW)
    assert query.range_query(store, req, NOW, settings)["points"][-1][1] == pytest.approx(30.0)
    # an old 1-hour window is past raw retention: answered by minute rollups
    req = parse_range(
        _q(agent="a2", metric="logs_in", start=str(NOW - 7.5 * DAY), end=str(NOW - 7.4 * DAY)), NOW
    )
    assert query.range_query(store, req, NOW, settings)["resolution"] == "1m"


def test_retention_deletes_exactly_the_old_rows(tmp_path: Path) -> None:
    store = MetricsStore(tmp_path / "m.duckdb")
    edge = NOW - 7 * DAY
    store.insert_arrays(rows("a1", edge - 2, edge + 3, every=1.0))  # ts edge-2 .. edge+2
    with store.cursor() as cur:
        for table, keep in (("roll_60", 35 * DAY), ("roll_3600", 400 * DAY)):
            for t in (NOW - keep - 60, NOW - keep, NOW - keep + 60):
                cur.execute(f"INSERT INTO {table} (agent, grp, ts, dt) VALUES ('a1', 'g', ?, 60)", [t])
    deleted = store.retain(NOW, raw_s=7 * DAY, minute_s=35 * DAY, hour_s=400 * DAY)
    assert deleted == {"raw": 2, "roll_60": 1, "roll_3600": 1}
    with store.cursor() as cur:
        kept = [r[0] for r in cur.execute("SELECT ts FROM raw ORDER BY ts").fetchall()]
        assert kept == [edge, edge + 1, edge + 2]
        for table, keep in (("roll_60", 35 * DAY), ("roll_3600", 400 * DAY)):
            ts = [r[0] for r in cur.execute(f"SELECT ts FROM {table} ORDER BY ts").fetchall()]
            assert ts == [NOW - keep, NOW - keep + 60]
    assert store.retain(NOW, raw_s=7 * DAY, minute_s=35 * DAY, hour_s=400 * DAY) == {
        "raw": 0,
        "roll_60": 0,
        "roll_3600": 0,
    }


def test_reopened_store_keeps_history(tmp_path: Path) -> None:
    settings = MetricsSettings(data_dir=tmp_path)
    store = MetricsStore(settings.db_path)
    store.insert_arrays(rows("a1", NOW - 2 * DAY, NOW))
    store.rollup(NOW, settings.rollup_lag_s)
    req = parse_range(_q(agent="a1", metric="logs_in", start="-2d"), NOW)
    before = query.range_query(store, req, NOW, settings)
    counts, marks = store.counts(), store.watermarks()
    store.close()
    again = MetricsStore(settings.db_path)
    assert again.counts() == counts and again.watermarks() == marks
    assert query.range_query(again, req, NOW, settings) == before
    again.close()


def test_concurrent_queries_while_writing(filled: tuple[MetricsSettings, MetricsStore]) -> None:
    """The internal endpoint answers from several threads while the scraper thread inserts. Every
    query and insert is timed; some query must have run while an insert was running (otherwise
    nothing ran concurrently and nothing was tested), and every query's answer stays right."""
    settings, store = filled
    store.rollup(NOW, settings.rollup_lag_s)
    errors: list[BaseException] = []
    req = parse_range(_q(agent="a1", metric="logs_in", start="-1d", step="1h"), NOW)
    started, written = threading.Event(), threading.Event()
    queries: list[tuple[float, float]] = []
    inserts: list[tuple[float, float]] = []

    def overlaps() -> int:
        return sum(1 for q0, q1 in list(queries) for i0, i1 in inserts if q0 < i1 and i0 < q1)

    def reader() -> None:
        try:
            started.wait(30)
            for _ in range(10_000):  # bounded; ends when the writer is done
                if written.is_set():
                    return
                t0 = time.perf_counter()
                res = query.range_query(store, req, NOW, settings)
                queries.append((t0, time.perf_counter()))
                assert all(v == pytest.approx(10.0) for _, v in res["points"])
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=reader) for _ in range(4)]
    for t in threads:
        t.start()
    started.set()
    for k in range(500):  # until a query overlapped an insert (at least 5 inserts; bounded)
        t0 = time.perf_counter()
        store.insert_arrays(rows("b1", NOW + k * 60, NOW + (k + 1) * 60))
        inserts.append((t0, time.perf_counter()))
        if k >= 4 and overlaps():
            break
    written.set()
    for t in threads:
        t.join(60)
    assert not errors, errors
    assert overlaps() > 0, f"no query ran during any of the {len(inserts)} inserts ({len(queries)} queries)"
    assert store.counts()["raw"] == 3 * 8 * 1440 + len(inserts)
