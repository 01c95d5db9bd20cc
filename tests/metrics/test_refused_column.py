"""The `refused` column: parsed from the agent's page, summed over signals, stored, queried; and a
store made before it existed (a DuckDB file, the DuckLake tables) gains it when opened, keeping every
row it had. Real DuckDB files in tmp_path; the lake's catalog in the test PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import duckdb
import psycopg
import pytest

from metrics import query
from metrics.lake import open_lake
from metrics.parse import RAW_COUNTERS, parse_page
from metrics.rates import COUNTER_COLUMNS, increases
from metrics.shards import PgBaselines
from metrics.store import Batch, MetricsStore

T0 = 1_800_000_000.0
# The tables as they were before `refused`: nine counter columns, ten raw baseline values.
OLD_COUNTERS = ("cpu", "logs_in", "logs_out", "metrics_in", "metrics_out", "traces_in", "traces_out")
OLD_C = ", ".join(f"{c} DOUBLE" for c in (*OLD_COUNTERS, "send_failed"))
OLD_SCHEMA = f"""
CREATE TABLE raw (agent VARCHAR, grp VARCHAR, ts DOUBLE, dt DOUBLE, {OLD_C}, memory DOUBLE, up DOUBLE,
    aid UBIGINT);
CREATE TABLE roll_60 (agent VARCHAR, grp VARCHAR, ts DOUBLE, dt DOUBLE, {OLD_C}, mem_sum DOUBLE,
    mem_n BIGINT, mem_max DOUBLE, up_min DOUBLE, aid UBIGINT);
CREATE TABLE roll_3600 (agent VARCHAR, grp VARCHAR, ts DOUBLE, dt DOUBLE, {OLD_C}, mem_sum DOUBLE,
    mem_n BIGINT, mem_max DOUBLE, up_min DOUBLE, aid UBIGINT);
CREATE TABLE meta (key VARCHAR, value DOUBLE);
CREATE TABLE baseline (agent VARCHAR, ts DOUBLE, {", ".join(f"c{i} DOUBLE" for i in range(10))});
INSERT INTO raw VALUES ('old', 'edge', {T0}, 10, 1, 100, 90, 0, 0, 0, 0, 2, 5e7, 1, hash('old'));
INSERT INTO roll_60 VALUES ('old', 'edge', {T0 - 3600}, 60, 6, 600, 540, 0, 0, 0, 0, 12, 1e8, 2, 6e7, 1,
    hash('old'));
INSERT INTO baseline VALUES ('old', {T0}, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10);
"""

PAGE = b"""# TYPE ctrltower_collector_items_total counter
ctrltower_collector_items_total{signal="logs",outcome="accepted"} 70
ctrltower_collector_items_total{signal="logs",outcome="refused"} 30
ctrltower_collector_items_total{signal="metrics",outcome="refused"} 5
ctrltower_collector_items_total{signal="logs",outcome="sent"} 60
ctrltower_collector_cpu_seconds_total 1.5
"""


def test_refused_is_parsed_summed_over_signals_and_reset_handled() -> None:
    page = parse_page(PAGE)
    assert page.counters[RAW_COUNTERS.index("logs:refused")] == 30
    assert page.counters[RAW_COUNTERS.index("metrics:refused")] == 5
    # the counters that were there before keep their positions (saved baselines rely on them)
    assert RAW_COUNTERS[:10] == (
        "cpu",
        *(f"{s}:{o}" for s in ("logs", "metrics", "traces") for o in ("accepted", "sent", "send_failed")),
    )
    later = list(page.counters)
    later[RAW_COUNTERS.index("logs:refused")] = 50  # +20
    later[RAW_COUNTERS.index("metrics:refused")] = 2  # restarted from zero: +2
    dt, incs = increases(T0, page.counters, T0 + 10, later, max_gap_s=60)
    assert dt == 10 and dict(zip(COUNTER_COLUMNS, incs, strict=True))["refused"] == 22


def _check_migrated(store: MetricsStore) -> None:
    """The old rows are all there (refused NULL, which sums skip) and new rows carry refused."""
    assert sorted(store.migrated) == [
        "baseline.c10",
        "baseline.c11",
        "baseline.c12",
        "raw.refused",
        "roll_3600.refused",
        "roll_60.refused",
    ]
    with store.cursor() as cur:
        old = cur.execute(
            "SELECT logs_in, send_failed, refused, memory FROM raw WHERE agent = 'old'"
        ).fetchall()
        rolled = cur.execute("SELECT logs_in, mem_max, refused FROM roll_60 WHERE agent = 'old'").fetchall()
    assert old == [(100.0, 2.0, None, 5e7)] and rolled == [(600.0, 6e7, None)]
    batch = Batch()
    incs: list[float | None] = [0.0] * len(COUNTER_COLUMNS)
    incs[COUNTER_COLUMNS.index("logs_in")] = 70.0
    incs[COUNTER_COLUMNS.index("refused")] = 30.0
    batch.add("new", "edge", T0 + 10, 10.0, incs, 4e7, 1.0)
    assert store.insert(batch) == 1
    sums = query.sums(store, ["old", "new"], T0 - 60, T0 + 60)
    assert sums["old"]["logs_in"] == 100.0 and sums["old"]["refused"] == 0.0
    assert sums["new"]["logs_in"] == 70.0 and sums["new"]["refused"] == 30.0
    # rollups name their columns: the new column lands in its place whatever the old table's order
    assert store.rollup(T0 + 3600, lag_s=0)[60] == 2
    with store.cursor() as cur:
        rows = cur.execute(
            f"SELECT agent, logs_in, refused, mem_max FROM roll_60 WHERE ts >= {T0 - 60} ORDER BY agent"
        ).fetchall()
    assert rows == [("new", 70.0, 30.0, 4e7), ("old", 100.0, None, 5e7)]
    # a baseline saved before refused existed is left out (that agent's next scrape sets it again)
    assert store.load_baselines() == {}
    store.save_baselines({"new": (T0 + 10, [float(i) for i in range(len(RAW_COUNTERS))])})
    assert store.load_baselines() == {"new": (T0 + 10, [float(i) for i in range(len(RAW_COUNTERS))])}


def test_an_old_duckdb_file_gains_refused_and_keeps_its_data(tmp_path: Path) -> None:
    path = tmp_path / "metrics.duckdb"
    con = duckdb.connect(str(path))
    con.execute(OLD_SCHEMA)
    con.close()
    store = MetricsStore(path)
    try:
        _check_migrated(store)
    finally:
        store.close()
    again = MetricsStore(path)  # reopened: nothing left to add, everything kept
    try:
        assert again.migrated == []
        assert again.counts()["raw"] == 2
    finally:
        again.close()


@pytest.mark.slow
def test_old_lake_tables_gain_refused_and_keep_their_data(tmp_path: Path, database_url: str) -> None:
    schema = database_url.rsplit("search_path%3D", 1)[-1]
    data = str(tmp_path / "lake")
    con = open_lake(database_url, data, schema)
    con.execute(OLD_SCHEMA)
    con.close()
    store = MetricsStore(data, con=open_lake(database_url, data, schema))
    try:
        _check_migrated(store)
    finally:
        store.close()
    other = MetricsStore(data, con=open_lake(database_url, data, schema))  # another replica
    try:
        assert other.migrated == []
        assert query.sums(other, ["new"], T0 - 60, T0 + 60)["new"]["refused"] == 30.0
    finally:
        other.close()


@pytest.mark.slow
def test_shared_baselines_saved_before_refused_are_not_used(database_url: str) -> None:
    """Scale-out: the replicas' shared baselines (PostgreSQL) from before the upgrade have ten values;
    that agent starts without one, the others load as saved."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE metric_baselines (agent TEXT PRIMARY KEY, ts REAL NOT NULL, vals TEXT NOT NULL)"
        )
        conn.execute(
            "INSERT INTO metric_baselines VALUES ('old', 1.0, %s)", ("[" + ", ".join(["1"] * 10) + "]",)
        )
    baselines = PgBaselines(database_url)
    try:
        now = [float(i) for i in range(len(RAW_COUNTERS))]
        baselines.save({"new": (2.0, now)})
        assert baselines.load(["old", "new"]) == {"new": (2.0, now)}
    finally:
        baselines.close()
