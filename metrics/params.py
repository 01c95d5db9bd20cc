"""Validation of metric query parameters into typed requests (pure: `now` is passed in).

Shared by the metrics process's internal endpoint; the Flask blueprint forwards the query string
untouched, so the rules live in one place. Errors are QueryError with a stable code.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from schemas.common import parse_duration as schemas_parse_duration
from schemas.errors import Permanent
from schemas.metrics import QUERY_METRICS

MAX_POINTS = 11000
MAX_RANGE_S = 400 * 86400.0
Agg = Literal["sum", "avg", "max"]


class QueryError(Permanent):
    def __init__(self, message: str, code: str = "bad_request", details: object = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.details = details


@dataclass(frozen=True, slots=True)
class RangeRequest:
    metric: str
    scope: Literal["agent", "group", "fleet"]
    key: str | None
    start: float
    end: float
    step: float | None
    agg: Agg


@dataclass(frozen=True, slots=True)
class TopRequest:
    metric: str
    n: int
    group: str | None


Args = Mapping[str, Sequence[str]]


def _one(args: Args, name: str) -> str | None:
    values = args.get(name) or []
    if len(values) > 1:
        raise QueryError(f"parameter '{name}' given more than once")
    return values[0] if values else None


def parse_duration(text: str, name: str) -> float:
    seconds = schemas_parse_duration(text) if len(text) <= 64 else None
    if seconds is None or not math.isfinite(seconds):  # digits enough to overflow a float: inf
        raise QueryError(f"bad {name} {text[:64]!r}: use seconds or a duration like 30s, 5m, 1h, 7d")
    return seconds


def parse_time(text: str, now: float, name: str) -> float:
    """Unix seconds, RFC 3339 / ISO 8601, 'now', or 'now-24h' / '-24h' relative to now."""
    t = text.strip()
    if t == "now":
        return now
    rel = t[3:] if t.startswith("now") else t
    if rel.startswith("-") and schemas_parse_duration(rel[1:]) is not None:
        return now - parse_duration(rel[1:], name)
    try:
        value = float(t)
    except ValueError:
        try:
            parsed = datetime.fromisoformat(t)
        except ValueError:
            raise QueryError(
                f"bad {name} {text!r}: use unix seconds, RFC 3339, 'now' or a relative time like -24h"
            ) from None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        return parsed.timestamp()
    if not math.isfinite(value) or value < 0:
        raise QueryError(f"bad {name} {text!r}: not a time")
    return value


def _metric(args: Args) -> str:
    metric = _one(args, "metric")
    if metric is None:
        raise QueryError("parameter 'metric' is required", details={"metrics": sorted(QUERY_METRICS)})
    if metric not in QUERY_METRICS:
        raise QueryError(
            f"unknown metric {metric!r}", code="unknown_metric", details={"metrics": sorted(QUERY_METRICS)}
        )
    return metric


def parse_range(args: Args, now: float) -> RangeRequest:
    metric = _metric(args)
    agent, group = _one(args, "agent"), _one(args, "group")
    if agent is not None and group is not None:
        raise QueryError("give 'agent' or 'group', not both (neither: the whole fleet)")
    scope: Literal["agent", "group", "fleet"] = "agent" if agent else "group" if group else "fleet"
    end_s, start_s, step_s = _one(args, "end"), _one(args, "start"), _one(args, "step")
    end = parse_time(end_s, now, "end") if end_s else now
    start = parse_time(start_s, now, "start") if start_s else end - 3600.0
    if end <= start:
        raise QueryError("'end' must be after 'start'")
    if end - start > MAX_RANGE_S:
        raise QueryError(f"range longer than {MAX_RANGE_S / 86400:g} days")
    step = parse_duration(step_s, "step") if step_s else None
    if step is not None:
        if step < 1:
            raise QueryError("'step' must be at least 1s")
        if step > MAX_RANGE_S:
            raise QueryError(f"'step' must be at most {MAX_RANGE_S / 86400:g}d")
        if (end - start) / step > MAX_POINTS:
            raise QueryError(f"more than {MAX_POINTS} points: raise 'step' or shorten the range")
    agg = _one(args, "agg") or "sum"
    if agg not in ("sum", "avg", "max"):
        raise QueryError(f"bad agg {agg!r}: sum, avg or max")
    return RangeRequest(metric, scope, agent or group, start, end, step, agg)  # type: ignore[arg-type]


def parse_top(args: Args) -> TopRequest:
    metric = _metric(args)
    n_s = _one(args, "n") or "10"
    try:
        n = int(n_s)
    except ValueError:
        raise QueryError(f"bad n {n_s!r}: an integer 1..1000") from None
    if not 1 <= n <= 1000:
        raise QueryError(f"bad n {n_s!r}: an integer 1..1000")
    return TopRequest(metric, n, _one(args, "group"))


def parse_agents(args: Args) -> list[str] | None:
    """`agent=ID` repeated and/or `agents=ID,ID`; None: every agent."""
    ids = list(args.get("agent") or [])
    for chunk in args.get("agents") or []:
        ids += [a for a in chunk.split(",") if a]
    if len(ids) > 10000:
        raise QueryError("at most 10000 agents per call")
    return ids or None


def parse_since(args: Args, now: float) -> float:
    """`since=UNIX_SECONDS` (required, finite, not in the future, at most 7 days back)."""
    values = args.get("since") or []
    raw = values[0] if values else None
    if raw is None:
        raise QueryError("since is required (unix seconds)")
    try:
        value = float(raw)
    except ValueError:
        raise QueryError("since must be a number (unix seconds)", details={"since": raw}) from None
    if value != value or not now - 7 * 86400 <= value <= now:
        raise QueryError("since must be within the last 7 days", details={"since": raw})
    return value
