"""A purpose-built parser for the agent's /metrics page: only the `ctrltower_collector_*` series
the queries need (schemas/metrics.py), found with one compiled regex over the bytes.

The general Prometheus text parser costs ~1.2 ms per 75-series page; this one skips every other
line in C (the regex engine) and converts only the dozen values we store.
"""

from __future__ import annotations

import functools
import math
import re

from schemas.errors import Permanent
from schemas.metrics import COLLECTOR_CPU, COLLECTOR_ITEMS, COLLECTOR_MEMORY, COLLECTOR_UP

SIGNAL_NAMES = ("logs", "metrics", "traces")
OUTCOMES = ("accepted", "sent", "send_failed", "refused")
# The raw counters read from a page, in this order: cpu, then items per (signal, outcome), then the
# refused items per signal. Refused came later: its counters go last so that the positions of the
# others, which saved baselines (store.py, shards.py) keep by index, never move.
RAW_COUNTERS: tuple[str, ...] = (
    "cpu",
    *(f"{s}:{o}" for s in SIGNAL_NAMES for o in OUTCOMES if o != "refused"),
    *(f"{s}:refused" for s in SIGNAL_NAMES),
)
_ITEM_INDEX = {
    (name.split(":")[0], name.split(":")[1]): i for i, name in enumerate(RAW_COUNTERS) if ":" in name
}

_PREFIX = "ctrltower_collector_"
_NAMES = {
    COLLECTOR_CPU[len(_PREFIX) :]: "cpu",
    COLLECTOR_MEMORY[len(_PREFIX) :]: "memory",
    COLLECTOR_UP[len(_PREFIX) :]: "up",
    COLLECTOR_ITEMS[len(_PREFIX) :]: "items",
}
_LINE = re.compile(
    _PREFIX.encode() + rb"(" + b"|".join(re.escape(n.encode()) for n in _NAMES) + rb")"
    rb"(?:\{([^}\n]*)\})?[ \t]+([^ \t\r\n]+)",
)
_PREFIX_B = _PREFIX.encode()
_NL_PREFIX = b"\n" + _PREFIX_B
_LABEL = re.compile(rb'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


class PageError(Permanent):
    """The page is not an agent metrics page (no ctrltower_collector_* series, or bad numbers)."""


class Page:
    """The values read from one page. Counters the page lacks are 0 (prometheus_client exposes a
    labelled counter only once it was incremented); gauges it lacks are None."""

    __slots__ = ("counters", "memory", "up")

    def __init__(self, counters: list[float], memory: float | None, up: float | None) -> None:
        self.counters = counters
        self.memory = memory
        self.up = up


@functools.lru_cache(maxsize=1024)
def _item_index(labels: bytes) -> int | None:
    """Index in RAW_COUNTERS of an items series, from its raw label text (memoized: pages repeat)."""
    found = dict(_LABEL.findall(labels))
    return _ITEM_INDEX.get((found.get(b"signal", b"").decode(), found.get(b"outcome", b"").decode()))


def _next_line(body: bytes, pos: int) -> int:
    """Start of the next line after `pos` that begins with the prefix, or -1."""
    n = body.find(_NL_PREFIX, pos)
    return -1 if n == -1 else n + 1


def parse_page(body: bytes) -> Page:
    counters = [0.0] * len(RAW_COUNTERS)
    memory: float | None = None
    up: float | None = None
    found = False
    # Jump from one "\nctrltower_collector_" to the next (memchr-speed find), match only there.
    pos = 0 if body.startswith(_PREFIX_B) else _next_line(body, 0)
    while pos != -1:
        m = _LINE.match(body, pos)  # anchored at pos: a line start
        pos = _next_line(body, pos)
        if m is None:
            continue
        name = _NAMES[m.group(1).decode()]
        try:
            value = float(m.group(3))
        except ValueError as exc:
            raise PageError(f"bad sample value for {_PREFIX}{m.group(1).decode()}") from exc
        found = True
        finite = math.isfinite(value)
        if name == "items":
            idx = _item_index(m.group(2) or b"")
            if idx is not None and finite:
                counters[idx] = value
        elif name == "cpu":
            if finite:
                counters[0] = value
        elif name == "memory":
            memory = value if finite else None
        else:
            up = value if finite else None
    if not found:
        raise PageError(f"no {_PREFIX}* series on the page")
    return Page(counters, memory, up)
