"""The agent page's chart range: presets (15m .. 7d) or a custom from/to in UTC (pure)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

PRESETS: dict[str, float] = {"15m": 900.0, "1h": 3600.0, "6h": 6 * 3600.0, "24h": 86400.0, "7d": 7 * 86400.0}
DEFAULT = "1h"
MAX_CUSTOM_S = 90 * 86400.0
LOCAL_FORMAT = "%Y-%m-%dT%H:%M"  # what <input type="datetime-local"> sends


@dataclass(frozen=True)
class TimeRange:
    name: str  # a preset name or "custom"
    start: float
    end: float
    error: str | None = None  # set when the request was bad and the default was used instead

    def local(self, ts: float) -> str:
        return datetime.fromtimestamp(ts, UTC).strftime(LOCAL_FORMAT)


def _parse_local(text: str) -> float:
    moment = datetime.strptime(text.strip()[:16], LOCAL_FORMAT)
    return moment.replace(tzinfo=UTC).timestamp()


def parse_range(args: Mapping[str, str], now: float) -> TimeRange:
    """`range=15m|1h|6h|24h|7d` or `range=custom&from=...&to=...`; bad input falls back to 1h with a note."""
    name = args.get("range") or DEFAULT
    if name in PRESETS:
        return TimeRange(name, now - PRESETS[name], now)
    if name == "custom":
        try:
            start = _parse_local(args.get("from") or "")
            end = _parse_local(args.get("to") or "") if args.get("to") else now
        except ValueError:
            return _fallback(now, "custom range: give from/to as YYYY-MM-DDTHH:MM (UTC)")
        if end <= start:
            return _fallback(now, "custom range: 'from' must be before 'to'")
        if end - start > MAX_CUSTOM_S:
            return _fallback(now, "custom range: at most 90 days")
        return TimeRange("custom", start, end)
    return _fallback(now, f"unknown range {name[:20]!r}: use one of {', '.join(PRESETS)} or custom")


def _fallback(now: float, error: str) -> TimeRange:
    return TimeRange(DEFAULT, now - PRESETS[DEFAULT], now, error)
