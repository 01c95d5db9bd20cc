"""The pure core: the page parser and counter increases (resets, gaps)."""

from __future__ import annotations

import math

import pytest

from metrics.parse import RAW_COUNTERS, PageError, parse_page
from metrics.rates import COUNTER_COLUMNS, increase, increases
from tests.metrics.exporter import page


def test_parse_reads_only_ctrltower_series() -> None:
    values = {"cpu": 12.5, "memory": 1.5e8, "up": 1, "logs:accepted": 100, "logs:sent": 90}
    p = parse_page(page(values))
    assert p.counters[RAW_COUNTERS.index("cpu")] == 12.5
    assert p.counters[RAW_COUNTERS.index("logs:accepted")] == 100
    assert p.counters[RAW_COUNTERS.index("logs:sent")] == 90
    assert p.memory == 1.5e8
    assert p.up == 1
    # counters the agent has not exposed yet count as zero (prometheus_client exposes on first use)
    assert p.counters[RAW_COUNTERS.index("traces:sent")] == 0


def test_parse_label_order_does_not_matter() -> None:
    values = {"cpu": 1, "metrics:send_failed": 7}
    a = parse_page(page(values))
    b = parse_page(page(values, reorder_labels=True))
    assert a.counters == b.counters
    assert a.counters[RAW_COUNTERS.index("metrics:send_failed")] == 7


def test_parse_ignores_created_and_other_series() -> None:
    body = (
        b"ctrltower_collector_cpu_seconds_created 1700000000\n"
        b"ctrltower_collector_cpu_seconds_total 3 1700000000000\n"
        b"ctrltower_collector_up_extra 5\n"
        b"ctrltower_collector_up 0\n"
    )
    p = parse_page(body)
    assert p.counters[0] == 3
    assert p.up == 0
    assert p.memory is None


@pytest.mark.parametrize(
    "body",
    [b"", b"\x00\x01\x02garbage", b"<html>not metrics</html>", b"python_gc_objects_collected_total 3\n"],
)
def test_parse_rejects_pages_without_agent_series(body: bytes) -> None:
    with pytest.raises(PageError):
        parse_page(body)


def test_parse_rejects_bad_numbers() -> None:
    with pytest.raises(PageError, match="bad sample value"):
        parse_page(b"ctrltower_collector_up abc\n")


def test_nan_gauge_is_missing_not_zero() -> None:
    p = parse_page(b"ctrltower_collector_resident_memory_bytes NaN\nctrltower_collector_up 1\n")
    assert p.memory is None


def test_increase_handles_reset() -> None:
    assert increase(100, 150) == 50
    assert increase(150, 20) == 20  # restarted from zero: 20 since the restart
    assert increase(5, 5) == 0


def _raw(**kw: float) -> list[float]:
    vals = [0.0] * len(RAW_COUNTERS)
    for k, v in kw.items():
        vals[RAW_COUNTERS.index(k.replace("__", ":"))] = v
    return vals


def test_increases_sums_send_failed_and_handles_per_series_reset() -> None:
    prev = _raw(cpu=10, logs__send_failed=5, traces__send_failed=100)
    cur = _raw(cpu=11, logs__send_failed=8, traces__send_failed=4)  # traces counter reset
    dt, incs = increases(1000.0, prev, 1015.0, cur, max_gap_s=60)
    assert dt == 15
    by = dict(zip(COUNTER_COLUMNS, incs, strict=True))
    assert by["cpu"] == 1
    assert by["send_failed"] == 3 + 4


def test_first_scrape_and_gaps_give_no_rate() -> None:
    cur = _raw(cpu=5)
    assert increases(None, None, 10.0, cur, 60) == (None, [None] * len(COUNTER_COLUMNS))
    dt, incs = increases(0.0, _raw(cpu=1), 61.0, cur, max_gap_s=60)
    assert dt is None and all(v is None for v in incs)
    dt, _ = increases(0.0, _raw(cpu=1), 60.0, cur, max_gap_s=60)
    assert dt is not None and math.isclose(dt, 60)
