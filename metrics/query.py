"""Time-range queries, latest values and top-N over the store (read only).

The resolution is chosen by range (and by what retention still holds): up to 6 h raw rows, up to
3 days minute rollups, beyond that hour rollups. The newest part of the range that the rollups
have not reached yet is read from the finer table, so the answer always runs up to `end`.
Empty buckets are null (a gap), never zero.
"""

from __future__ import annotations

import math
from typing import Any

from metrics.params import RangeRequest
from metrics.rates import COUNTER_COLUMNS
from metrics.settings import MetricsSettings
from metrics.store import MetricsStore
from schemas.metrics import QUERY_METRICS

RAW_UP_TO_S = 6 * 3600.0
MINUTE_UP_TO_S = 3 * 86400.0
TARGET_POINTS = 240
RESOLUTION_NAMES = {0: "raw", 60: "1m", 3600: "1h"}
UNITS = {"cpu": "cores", "memory": "bytes"}


def choose_resolution(start: float, end: float, now: float, settings: MetricsSettings) -> int:
    span = end - start
    if span <= RAW_UP_TO_S and start >= now - settings.raw_retention_s:
        return 0
    if span <= MINUTE_UP_TO_S and start >= now - settings.minute_retention_s:
        return 60
    return 3600


def choose_step(
    start: float, end: float, resolution: int, requested: float | None, interval_s: float
) -> float:
    # raw buckets hold at least two scrapes, so a jittered scrape never leaves a bucket empty
    floor = float(resolution) if resolution else max(1.0, 2 * interval_s)
    want = requested if requested is not None else (end - start) / TARGET_POINTS
    if resolution:
        return max(1, math.ceil(want / resolution)) * float(resolution)  # whole rollup buckets
    return requested if requested is not None else max(floor, float(math.ceil(want)))


def _value_expr(metric: str) -> tuple[str, str]:
    """(columns to select from every table, aggregate giving the metric per agent and bucket)."""
    if metric == "memory":
        return "mem_sum, mem_n", "sum(mem_sum) / nullif(sum(mem_n), 0)"
    col = metric
    assert col in COUNTER_COLUMNS
    return f"dt, {col}", f"sum({col}) / nullif(sum(dt), 0)"


def _segments(
    res: int, start: float, end: float, wm: dict[int, float | None]
) -> list[tuple[str, float, float]]:
    w60 = wm.get(60) if wm.get(60) is not None else -math.inf
    w3600 = wm.get(3600) if wm.get(3600) is not None else -math.inf
    assert w60 is not None and w3600 is not None
    if res == 0:
        parts = [("raw", start, end)]
    elif res == 60:
        parts = [("roll_60", start, min(end, w60)), ("raw", max(start, w60), end)]
    else:
        w3600 = min(w3600, w60)
        parts = [
            ("roll_3600", start, min(end, w3600)),
            ("roll_60", max(start, w3600), min(end, w60)),
            ("raw", max(start, w60), end),
        ]
    return [p for p in parts if p[2] > p[1]]


def range_query(
    store: MetricsStore, req: RangeRequest, now: float, settings: MetricsSettings
) -> dict[str, Any]:
    res = choose_resolution(req.start, req.end, now, settings)
    step = choose_step(req.start, req.end, res, req.step, settings.interval_s)
    cols, value = _value_expr(req.metric)
    wm = store.watermarks()
    selects: list[str] = []
    args: list[Any] = []
    # one agent: by its integer key (hash of the id); 64-bit collisions among a fleet are negligible
    where = {"agent": " AND aid = hash(?::VARCHAR)", "group": " AND grp = ?", "fleet": ""}[req.scope]
    for table, lo, hi in _segments(res, req.start, req.end, wm):
        if table == "raw" and req.metric == "memory":
            src_cols = "memory AS mem_sum, (memory IS NOT NULL)::BIGINT AS mem_n"
        else:
            src_cols = cols
        selects.append(f"SELECT agent, ts, {src_cols} FROM {table} WHERE ts >= ? AND ts < ?{where}")
        args += [lo, hi] + ([req.key] if req.key is not None else [])
    values: dict[float, float | None] = {}
    agents_seen = 0
    if selects:
        # step is bound, never SQL text (a repr like 'inf' was DuckDB syntax; a value is only a value)
        bucket = "floor(ts / ?::DOUBLE) * ?::DOUBLE"  # after every ? of the selects: args + [step, step]
        if req.scope == "agent":  # one agent: no per-agent level
            sql = (
                f"WITH src AS ({' UNION ALL '.join(selects)}) "
                f"SELECT {bucket} AS b, {value} AS v, 1 FROM src GROUP BY b ORDER BY b"
            )
        else:
            outer = {"sum": "sum(v)", "avg": "avg(v)", "max": "max(v)"}[req.agg]
            sql = (
                f"WITH src AS ({' UNION ALL '.join(selects)}), "
                f"per AS (SELECT agent, {bucket} AS b, {value} AS v FROM src GROUP BY agent, b) "
                f"SELECT b, {outer}, count(v) FROM per GROUP BY b ORDER BY b"
            )
        with store.cursor() as cur:
            for b, v, n in cur.execute(sql, [*args, step, step]).fetchall():
                values[float(b)] = None if v is None or n == 0 else float(v)
                agents_seen = max(agents_seen, int(n))
    points: list[tuple[float, float | None]] = []
    k0 = math.floor(req.start / step)
    k = k0
    while k * step < req.end:  # bucket keys computed exactly as in SQL: floor(ts / step) * step
        points.append((k * step, values.get(k * step)))
        k += 1
    kind = QUERY_METRICS[req.metric][2]
    return {
        "metric": req.metric,
        "kind": kind,
        "unit": UNITS.get(req.metric, "per_second"),
        "scope": req.scope,
        "key": req.key,
        "agg": req.agg if req.scope != "agent" else None,
        "start": req.start,
        "end": req.end,
        "step": step,
        "resolution": RESOLUTION_NAMES[res],
        "points": points,
    }


def latest(
    store: MetricsStore,
    now: float,
    window_s: float,
    *,
    agents: list[str] | None = None,
    group: str | None = None,
    failing: frozenset[str] = frozenset(),
) -> dict[str, dict[str, Any]]:
    """The newest values of every metric per agent, from scrapes within `window_s`. Agents with no
    recent scrape, or whose last scrape failed, are stale: every value None, never zero."""
    rates = ", ".join(f"sum({c}) / nullif(sum(dt), 0)" for c in COUNTER_COLUMNS)
    sql = f"SELECT agent, max(ts), {rates}, arg_max(memory, ts) FROM raw WHERE ts >= ? "
    args: list[Any] = [now - window_s]
    if group is not None:
        sql += "AND grp = ? "
        args.append(group)
    if agents is not None:  # only these agents: a semi-join on the integer key
        sql += "AND aid IN (SELECT hash(unnest(?::VARCHAR[]))) "
        args.append(list(agents))
    sql += "GROUP BY agent"
    with store.cursor() as cur:
        rows = cur.execute(sql, args).fetchall()
    wanted = set(agents) if agents is not None else None
    out: dict[str, dict[str, Any]] = {}
    for row in rows:
        agent = str(row[0])
        if wanted is not None and agent not in wanted:
            continue
        stale = agent in failing
        entry: dict[str, Any] = {"ts": float(row[1]), "stale": stale}
        for i, c in enumerate(COUNTER_COLUMNS):
            entry[c] = None if stale or row[2 + i] is None else float(row[2 + i])
        mem = row[2 + len(COUNTER_COLUMNS)]
        entry["memory"] = None if stale or mem is None else float(mem)
        out[agent] = entry
    for agent in wanted or ():
        if agent not in out:
            out[agent] = {"ts": None, "stale": True, "memory": None} | dict.fromkeys(COUNTER_COLUMNS)
    return out


def top(
    store: MetricsStore,
    metric: str,
    n: int,
    now: float,
    window_s: float,
    *,
    group: str | None = None,
    failing: frozenset[str] = frozenset(),
) -> list[dict[str, Any]]:
    """The n agents with the highest latest value of `metric` (stale agents excluded), ranked in SQL."""
    value = "arg_max(memory, ts)" if metric == "memory" else f"sum({metric}) / nullif(sum(dt), 0)"
    assert metric == "memory" or metric in COUNTER_COLUMNS
    sql = f"SELECT agent, {value} AS v FROM raw WHERE ts >= ? "
    args: list[Any] = [now - window_s]
    if group is not None:
        sql += "AND grp = ? "
        args.append(group)
    # failing agents are dropped after the ranking, so ask for enough extra rows to still return n
    sql += "GROUP BY agent HAVING v IS NOT NULL ORDER BY v DESC, agent LIMIT ?"
    args.append(n + len(failing))
    with store.cursor() as cur:
        rows = cur.execute(sql, args).fetchall()
    ranked = [{"agent": str(a), "value": float(v)} for a, v in rows if str(a) not in failing]
    return ranked[:n]


def sums(store: MetricsStore, agents: list[str], since: float, until: float) -> dict[str, dict[str, float]]:
    """Per agent, the seconds covered (`dt`) and each counter's increase in [since, until].

    A row covers the `dt` seconds before its `ts` (the scrape that ended them); only rows wholly inside
    the window count, so a window that starts when an agent applied a config never mixes in the time
    its collector ran the old one or was reloading.

    What a rollout's analysis judges a step on (webui/rollouts/analysis.py): ratios and per-agent rates
    over exactly the covered time, gaps (failed scrapes) excluded. Agents without rows are absent."""
    cols = ", ".join(f"coalesce(sum({c}), 0)" for c in COUNTER_COLUMNS)
    sql = (
        f"SELECT agent, coalesce(sum(dt), 0), {cols} FROM raw WHERE ts - dt >= ? AND ts <= ? "
        "AND aid IN (SELECT hash(unnest(?::VARCHAR[]))) GROUP BY agent"
    )
    with store.cursor() as cur:
        rows = cur.execute(sql, [since, until, list(agents)]).fetchall()
    wanted = set(agents)
    out: dict[str, dict[str, float]] = {}
    for row in rows:
        if str(row[0]) in wanted:
            out[str(row[0])] = {"dt": float(row[1])} | {
                c: float(row[2 + i]) for i, c in enumerate(COUNTER_COLUMNS)
            }
    return out
