"""The DuckDB store of agent samples (DATA_DIR/metrics.duckdb): schema, bulk insert, rollups,
retention. Written by the metrics process only (DuckDB allows one writing process).

Tables (ts = unix seconds; counter columns hold increases, see rates.py):
- `raw`: one row per successful scrape: agent, grp, ts, dt, <counters>, memory, up.
- `roll_60`, `roll_3600`: per agent and minute / hour: agent, grp, ts (bucket start), dt (sum),
  <counters> (sums), mem_sum, mem_n, mem_max, up_min. Rates stay sum(increase) / sum(dt).
- every table also has `aid` = DuckDB's 64-bit `hash(agent)`: one agent's rows are found by an
  integer compare, ~3x cheaper than comparing the id strings of every agent's rows.
- `baseline`: each agent's last scrape (ts, raw counter values), saved at shutdown, so the first
  scrape after a quick restart already yields a rate.
- `meta`: rollup watermarks: everything before `roll_<R>` seconds is rolled up into `roll_<R>`.

A column added after a file (or the lake's tables) was first made is added to it when the store opens
(`_migrate`: ALTER TABLE ... ADD COLUMN, NULL in the rows written before, which sum() skips), so an
existing file keeps its data; every insert names its columns, so their order in an old table does not
matter. Added so far: `refused` (raw, roll_60, roll_3600) and the baseline's c10..c12 (refused items).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb
import numpy as np

from metrics.parse import RAW_COUNTERS
from metrics.rates import COUNTER_COLUMNS
from schemas.errors import RetryLater

RESOLUTIONS = (60, 3600)
_C = ", ".join(f"{c} DOUBLE" for c in COUNTER_COLUMNS)
_B = ", ".join(f"c{i} DOUBLE" for i in range(len(RAW_COUNTERS)))  # raw counter values, RAW_COUNTERS order
_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS raw (agent VARCHAR, grp VARCHAR, ts DOUBLE, dt DOUBLE, {_C},
    memory DOUBLE, up DOUBLE, aid UBIGINT);
CREATE TABLE IF NOT EXISTS roll_60 (agent VARCHAR, grp VARCHAR, ts DOUBLE, dt DOUBLE, {_C},
    mem_sum DOUBLE, mem_n BIGINT, mem_max DOUBLE, up_min DOUBLE, aid UBIGINT);
CREATE TABLE IF NOT EXISTS roll_3600 (agent VARCHAR, grp VARCHAR, ts DOUBLE, dt DOUBLE, {_C},
    mem_sum DOUBLE, mem_n BIGINT, mem_max DOUBLE, up_min DOUBLE, aid UBIGINT);
CREATE TABLE IF NOT EXISTS meta (key VARCHAR{{meta_key}}, value DOUBLE);
CREATE TABLE IF NOT EXISTS baseline (agent VARCHAR, ts DOUBLE, {_B});
"""
RAW_COLUMNS: tuple[str, ...] = ("agent", "grp", "ts", "dt", *COUNTER_COLUMNS, "memory", "up")
# The uniform shape every query reads, whichever table it comes from.
_SUMS = ", ".join(f"sum({c}) AS {c}" for c in COUNTER_COLUMNS)
_ROLL_COLUMNS: tuple[str, ...] = (
    "agent", "grp", "ts", "dt", *COUNTER_COLUMNS, "mem_sum", "mem_n", "mem_max", "up_min", "aid"
)  # fmt: skip
_BASELINE_COLUMNS: tuple[str, ...] = ("agent", "ts", *(f"c{i}" for i in range(len(RAW_COUNTERS))))
# Every column a table must have, for _migrate: name -> type.
_COLUMNS: dict[str, dict[str, str]] = {
    "raw": {c: "DOUBLE" for c in COUNTER_COLUMNS},
    "roll_60": {c: "DOUBLE" for c in COUNTER_COLUMNS},
    "roll_3600": {c: "DOUBLE" for c in COUNTER_COLUMNS},
    "baseline": {c: "DOUBLE" for c in _BASELINE_COLUMNS[2:]},
}
_ROLL_FROM_RAW = (
    f"SELECT agent, grp, floor(ts / {{r}}) * {{r}} AS ts, sum(dt) AS dt, {_SUMS}, sum(memory) AS mem_sum, "
    "count(memory) AS mem_n, max(memory) AS mem_max, min(up) AS up_min, aid FROM raw "
    "WHERE ts >= ? AND ts < ? GROUP BY ALL"
)
_ROLL_FROM_ROLL = (
    f"SELECT agent, grp, floor(ts / {{r}}) * {{r}} AS ts, sum(dt) AS dt, {_SUMS}, sum(mem_sum) AS mem_sum, "
    "sum(mem_n)::BIGINT AS mem_n, max(mem_max) AS mem_max, min(up_min) AS up_min, aid FROM {src} "
    "WHERE ts >= ? AND ts < ? GROUP BY ALL"
)


class StoreError(RetryLater):
    """DuckDB failed (disk full, file locked by another process, ...)."""


class Batch:
    """Rows buffered by the scraper, column by column, until the next bulk insert."""

    def __init__(self) -> None:
        self.cols: dict[str, list[Any]] = {c: [] for c in RAW_COLUMNS}

    def __len__(self) -> int:
        return len(self.cols["ts"])

    def add(
        self,
        agent: str,
        grp: str | None,
        ts: float,
        dt: float | None,
        incs: list[float | None],
        memory: float | None,
        up: float | None,
    ) -> None:
        c = self.cols
        c["agent"].append(agent)
        c["grp"].append(grp)
        c["ts"].append(ts)
        c["dt"].append(dt)
        for name, value in zip(COUNTER_COLUMNS, incs, strict=True):
            c[name].append(value)
        c["memory"].append(memory)
        c["up"].append(up)

    def arrays(self) -> dict[str, np.ndarray[Any, Any]]:
        # None becomes NaN in a float array, and DuckDB reads NaN from NumPy as NULL.
        out: dict[str, np.ndarray[Any, Any]] = {}
        for name, values in self.cols.items():
            dtype = object if name in ("agent", "grp") else np.float64
            out[name] = np.array(values, dtype=dtype)
        return out


class MetricsStore:
    """One DuckDB file, or the shared DuckLake (`con` from metrics/lake.py, several writers).

    Thread-safe: each call uses its own cursor; this process's writes are serialized. In the lake,
    rollups and retention run in one replica only (the one holding the leader lease) and the others
    re-read the watermarks every few seconds.
    """

    def __init__(
        self,
        path: Path | str,
        *,
        memory_limit: str | None = None,
        con: duckdb.DuckDBPyConnection | None = None,
    ) -> None:
        self.path = path
        self.lake = con is not None
        try:
            if con is None:
                con = duckdb.connect(str(path))
                if memory_limit is not None:
                    con.execute(f"SET memory_limit = '{memory_limit}'")  # validated by MetricsSettings
            self._con = con
            # DuckLake has no primary keys; the one writer of `meta` (the leader) keeps keys unique.
            self._con.execute(_SCHEMA.replace("{meta_key}", "" if self.lake else " PRIMARY KEY"))
        except duckdb.Error as exc:
            raise StoreError(f"opening {path}: {exc}") from exc
        self._write = threading.Lock()
        self.migrated = self._migrate()
        self._marks = self._read_watermarks()
        self._marks_at = time.monotonic()

    def close(self) -> None:
        self._con.close()

    def _columns(self, table: str) -> set[str]:
        with self.cursor() as cur:
            return {str(d[0]) for d in cur.execute(f"SELECT * FROM {table} LIMIT 0").description}

    def _migrate(self) -> list[str]:
        """Add the columns an older file or lake lacks (see the module docstring); returns them as
        'table.column'. Another replica may add the same column at the same moment: a failed ALTER
        is fine when the column is there afterwards."""
        added = []
        for table, wanted in _COLUMNS.items():
            for name in [c for c in wanted if c not in self._columns(table)]:
                try:
                    with self.cursor() as cur:
                        cur.execute(f"ALTER TABLE {table} ADD COLUMN {name} {wanted[name]}")
                except StoreError:
                    if name not in self._columns(table):
                        raise
                added.append(f"{table}.{name}")
        return added

    @contextmanager
    def cursor(self) -> Iterator[duckdb.DuckDBPyConnection]:
        cur = self._con.cursor()
        try:
            if self.lake:
                cur.execute("USE lake")  # a cursor starts in the in-memory catalog
            yield cur
        except duckdb.Error as exc:
            raise StoreError(f"metrics store: {exc}") from exc
        finally:
            cur.close()

    # --- writes ------------------------------------------------------------------------------

    def insert_arrays(self, arrays: dict[str, np.ndarray[Any, Any]]) -> int:
        """Bulk insert of raw rows given as NumPy columns (RAW_COLUMNS); NaN is stored as NULL."""
        n = len(arrays["ts"])
        if n == 0:
            return 0
        with self._write, self.cursor() as cur:
            cur.register("batch_rows", arrays)
            try:
                cur.execute(
                    f"INSERT INTO raw ({', '.join(RAW_COLUMNS)}, aid)"
                    f" SELECT {', '.join(RAW_COLUMNS)}, hash(agent) AS aid FROM batch_rows"
                )
            finally:
                cur.unregister("batch_rows")
        return n

    def insert(self, batch: Batch) -> int:
        return self.insert_arrays(batch.arrays()) if len(batch) else 0

    def _read_watermarks(self) -> dict[int, float | None]:
        with self.cursor() as cur:
            rows = dict(cur.execute("SELECT key, value FROM meta").fetchall())
        return {r: (None if rows.get(f"roll_{r}") is None else float(rows[f"roll_{r}"])) for r in RESOLUTIONS}

    def watermarks(self) -> dict[int, float | None]:
        """Rollup watermarks, cached: this process is the only writer, and rollup() refreshes them.

        In the lake another replica rolls up: re-read every 5 s (an older watermark only makes a query
        read more of the finer table, which holds the same sums)."""
        if self.lake and time.monotonic() - self._marks_at > 5.0:
            self._marks, self._marks_at = self._read_watermarks(), time.monotonic()
        return dict(self._marks)

    def rollup(self, now: float, lag_s: float) -> dict[int, int]:
        """Roll every complete minute older than `now - lag_s` into roll_60, and every complete hour
        of roll_60 into roll_3600. Idempotent: watermarks advance in the same transaction."""
        done: dict[int, int] = {}
        with self._write, self.cursor() as cur:
            upto = now - lag_s
            for res, src in ((60, "raw"), (3600, "roll_60")):
                cutoff = float(math.floor(upto / res) * res)
                row = cur.execute("SELECT value FROM meta WHERE key = ?", [f"roll_{res}"]).fetchone()
                if row is None:
                    first = cur.execute(f"SELECT min(ts) FROM {src}").fetchone()
                    if first is None or first[0] is None:
                        done[res] = 0
                        continue  # nothing to roll yet; the first rows set the watermark later
                    start = float(math.floor(float(first[0]) / res) * res)
                else:
                    start = float(row[0])
                if cutoff <= start:
                    done[res] = 0
                    upto = start
                    continue
                sql = _ROLL_FROM_RAW if src == "raw" else _ROLL_FROM_ROLL.replace("{src}", src)
                cur.execute("BEGIN TRANSACTION")
                try:
                    n = cur.execute(
                        f"INSERT INTO roll_{res} ({', '.join(_ROLL_COLUMNS)}) "
                        + sql.replace("{r}", str(res)),
                        [start, cutoff],
                    ).fetchone()
                    cur.execute("DELETE FROM meta WHERE key = ?", [f"roll_{res}"])
                    cur.execute("INSERT INTO meta VALUES (?, ?)", [f"roll_{res}", float(cutoff)])
                    cur.execute("COMMIT")
                except BaseException:
                    cur.execute("ROLLBACK")
                    raise
                done[res] = int(n[0]) if n else 0
                self._marks[res] = cutoff
                upto = cutoff  # hours are rolled only from minutes already rolled
        return done

    def retain(self, now: float, *, raw_s: float, minute_s: float, hour_s: float) -> dict[str, int]:
        """Delete rows older than each table's retention (ts < now - retention); keep the rest."""
        deleted: dict[str, int] = {}
        with self._write, self.cursor() as cur:
            for table, keep in (("raw", raw_s), ("roll_60", minute_s), ("roll_3600", hour_s)):
                row = cur.execute(f"DELETE FROM {table} WHERE ts < ?", [now - keep]).fetchone()
                deleted[table] = int(row[0]) if row else 0
        return deleted

    def save_baselines(self, baselines: dict[str, tuple[float, list[float]]]) -> None:
        """Each agent's last scrape (time, raw counter values), kept so that after a quick restart the
        first scrape already yields a rate instead of a gap. Written at shutdown; replaces the old set."""
        n = len(RAW_COUNTERS)
        agents = list(baselines)
        cols: dict[str, np.ndarray[Any, Any]] = {
            "agent": np.array(agents, dtype=object),
            "ts": np.array([baselines[a][0] for a in agents], dtype=np.float64),
        }
        values = np.array([baselines[a][1] for a in agents], dtype=np.float64).reshape(len(agents), n)
        for i in range(n):
            cols[f"c{i}"] = values[:, i].copy()
        with self._write, self.cursor() as cur:
            cur.execute("BEGIN TRANSACTION")
            cur.execute("DELETE FROM baseline")
            if agents:
                cur.register("baseline_rows", cols)
                names = ", ".join(cols)
                cur.execute(f"INSERT INTO baseline ({names}) SELECT {names} FROM baseline_rows")
                cur.unregister("baseline_rows")
            cur.execute("COMMIT")

    def load_baselines(self) -> dict[str, tuple[float, list[float]]]:
        """The saved baselines; one saved before a counter existed (NULL there) is left out: that
        agent's first scrape only sets its baseline again, as on a first start."""
        with self.cursor() as cur:
            rows = cur.execute(f"SELECT {', '.join(_BASELINE_COLUMNS)} FROM baseline").fetchall()
        return {
            str(r[0]): (float(r[1]), [float(v) for v in r[2:]])
            for r in rows
            if all(v is not None for v in r[1:])
        }

    def compact(self) -> None:
        """The lake only: merge the small Parquet files of frequent flushes and drop what old snapshots
        no longer need (run by the leader with the rollups)."""
        if not self.lake:
            return
        with self._write, self.cursor() as cur:
            cur.execute("CALL ducklake_merge_adjacent_files('lake')")
            cur.execute("CALL ducklake_expire_snapshots('lake', older_than => now() - INTERVAL 1 HOUR)")
            cur.execute("CALL ducklake_cleanup_old_files('lake', older_than => now() - INTERVAL 1 HOUR)")

    def counts(self) -> dict[str, int]:
        with self.cursor() as cur:
            out = {}
            for table in ("raw", "roll_60", "roll_3600"):
                row = cur.execute(f"SELECT count(*) FROM {table}").fetchone()
                out[table] = int(row[0]) if row else 0
            return out
