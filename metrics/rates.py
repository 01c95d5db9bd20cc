"""Counters to increases: the pure core of rate computation (no I/O, no clock).

Each successful scrape is stored as the increase of every counter since the agent's previous
successful scrape, and the seconds between them (`dt`). A counter that went down was reset (an
agent restart): it counted from zero, so its increase is its new value. Two scrapes further
apart than `max_gap_s` (failed or missing scrapes in between) leave a gap: `dt` and the increases
are None, so charts show a hole, never a zero or a spike. The first scrape of an agent only sets
the baseline. A rate over any time bucket is then `sum(increase) / sum(dt)` over its rows, which is
exact for the covered time whatever the bucket size: the same formula serves raw rows and rollups.
"""

from __future__ import annotations

from metrics.parse import RAW_COUNTERS
from schemas.metrics import QUERY_METRICS

# Stored counter columns (increases): the "rate" metrics of the query contract, in its order.
COUNTER_COLUMNS: tuple[str, ...] = tuple(
    name for name, (_, _, kind) in QUERY_METRICS.items() if kind == "rate"
)
# Which raw counters of a scraped page make each column; "send_failed" and "refused" sum the three
# signals'.
_RAW_SOURCES: dict[str, tuple[str, ...]] = {
    "cpu": ("cpu",),
    "logs_in": ("logs:accepted",),
    "logs_out": ("logs:sent",),
    "metrics_in": ("metrics:accepted",),
    "metrics_out": ("metrics:sent",),
    "traces_in": ("traces:accepted",),
    "traces_out": ("traces:sent",),
    "send_failed": ("logs:send_failed", "metrics:send_failed", "traces:send_failed"),
    "refused": ("logs:refused", "metrics:refused", "traces:refused"),
}
_SOURCES: tuple[tuple[int, ...], ...] = tuple(
    tuple(RAW_COUNTERS.index(src) for src in _RAW_SOURCES[column]) for column in COUNTER_COLUMNS
)


def increase(prev: float, cur: float) -> float:
    """The increase of a counter between two reads; a decrease means it restarted from zero."""
    return cur - prev if cur >= prev else cur


def increases(
    prev_ts: float | None, prev: list[float] | None, ts: float, cur: list[float], max_gap_s: float
) -> tuple[float | None, list[float | None]]:
    """(dt, increase per COUNTER_COLUMNS) between two scrapes of one agent; Nones for a gap."""
    if prev_ts is None or prev is None:
        return None, [None] * len(COUNTER_COLUMNS)
    dt = ts - prev_ts
    if dt <= 0 or dt > max_gap_s:
        return None, [None] * len(COUNTER_COLUMNS)
    raw = [increase(p, c) for p, c in zip(prev, cur, strict=True)]
    return dt, [sum(raw[i] for i in idx) for idx in _SOURCES]
