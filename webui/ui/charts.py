"""Server-side SVG time-series charts for the agent page (pure: data in, SVG text out).

No JavaScript charting library: the page works offline and renders the same in every browser.
Gaps in a series (None values, e.g. a failed scrape) break the line instead of drawing zero.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from html import escape

Point = tuple[float, float | None]  # (unix seconds, value or None for a gap)

PALETTE = ("#2563eb", "#16a34a", "#dc2626", "#9333ea", "#ea580c", "#0891b2")


@dataclass(frozen=True)
class Series:
    name: str
    points: Sequence[Point]


@dataclass(frozen=True)
class Marker:
    at: float  # unix seconds
    label: str


@dataclass(frozen=True)
class Chart:
    title: str
    series: Sequence[Series]
    start: float
    end: float
    unit: str = ""  # "bytes", "cores", "/s" or ""
    markers: Sequence[Marker] = field(default_factory=tuple)
    width: int = 640
    height: int = 200
    message: str | None = None  # shown instead of "no data" (e.g. metrics unavailable)


# The chart's own stylesheet: a chart served as an image (<img src=...svg>) cannot see the page's CSS.
CHART_CSS = (
    ".grid{stroke:#f1f5f9}.tick{stroke:#9ca3af}.frame{stroke:#d1d5db}"
    "text{font:11px system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;fill:#4b5563}"
    ".chart-title{font-weight:600;font-size:12px;fill:#111827}.series{stroke-width:1.8}"
    ".nodata{fill:#9ca3af;font-size:13px}.marker line{stroke:#9333ea;stroke-dasharray:4 3}"
    ".marker text{fill:#9333ea;font-size:10px}"
)


def format_value(value: float, unit: str) -> str:
    """Short human text for an axis label or tooltip: 1.5 MiB, 0.25 cores, 1.2k/s."""
    if unit == "bytes":
        size = float(value)
        for suffix in ("B", "KiB", "MiB", "GiB", "TiB"):
            if abs(size) < 1024 or suffix == "TiB":
                return f"{size:.0f} {suffix}" if suffix == "B" else f"{size:.1f} {suffix}"
            size /= 1024
    text = _si(value)
    if unit == "cores":
        return f"{text} cores"
    return f"{text}{unit}"


def _si(value: float) -> str:
    magnitude = abs(value)
    if magnitude >= 1e9:
        return f"{value / 1e9:.1f}G"
    if magnitude >= 1e6:
        return f"{value / 1e6:.1f}M"
    if magnitude >= 1e3:
        return f"{value / 1e3:.1f}k"
    if magnitude >= 10 or magnitude == 0:
        return f"{value:.0f}"
    if magnitude >= 0.1:
        return f"{value:.2f}"
    return f"{value:.3g}"


def nice_max(value: float) -> float:
    """The smallest 1/2/5 x 10^n that is >= value (an axis top that reads well)."""
    if value <= 0 or not math.isfinite(value):
        return 1.0
    exponent = math.floor(math.log10(value))
    for step in (1.0, 2.0, 5.0, 10.0):
        top = float(step * 10.0**exponent)
        if top >= value * 0.999999:
            return top
    return 10.0 ** (exponent + 1)


def _axis_top(value: float, unit: str) -> float:
    """A round axis top; for bytes round in KiB/MiB/GiB so the labels read 10 MiB, not 9.5 MiB."""
    if unit != "bytes" or value < 1024:
        return nice_max(value)
    scale = 1024.0
    while value / scale >= 1024 and scale < 1024.0**4:
        scale *= 1024
    return nice_max(value / scale) * scale


def _time_format(span: float) -> Callable[[float], str]:
    def fmt(ts: float) -> str:
        moment = datetime.fromtimestamp(ts, UTC)
        if span > 2 * 86400:
            return moment.strftime("%m-%d %H:%M")
        if span > 600:
            return moment.strftime("%H:%M")
        return moment.strftime("%H:%M:%S")

    return fmt


def _segments(points: Sequence[Point], start: float, end: float) -> list[list[tuple[float, float]]]:
    """Split a series at gaps (None) into runs of (t, v) inside [start, end]."""
    runs: list[list[tuple[float, float]]] = []
    current: list[tuple[float, float]] = []
    for ts, value in points:
        if ts < start or ts > end:
            continue
        if value is None or not math.isfinite(value):
            if current:
                runs.append(current)
                current = []
            continue
        current.append((ts, value))
    if current:
        runs.append(current)
    return runs


def render_chart(chart: Chart, *, standalone: bool = False) -> str:
    """One chart as <svg>: axes, a polyline per series, dashed revision markers, a legend.
    `standalone` embeds the stylesheet (for a chart served as its own image)."""
    width, height = chart.width, chart.height
    left, right, top, bottom = 58, 12, 24, 28
    plot_w, plot_h = width - left - right, height - top - bottom
    span = max(chart.end - chart.start, 1.0)
    runs_by_series = [_segments(s.points, chart.start, chart.end) for s in chart.series]
    values = [v for runs in runs_by_series for run in runs for _, v in run]
    y_top = _axis_top(max(values), chart.unit) if values else 1.0

    def x(ts: float) -> float:
        return left + (ts - chart.start) / span * plot_w

    def y(value: float) -> float:
        return top + plot_h - (max(value, 0.0) / y_top) * plot_h

    title = escape(chart.title)
    out: list[str] = [
        f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" role="img" aria-label="{title}">',
        f'<text class="chart-title" x="{left}" y="15">{title}</text>',
    ]
    if standalone:
        out.insert(1, f'<rect width="{width}" height="{height}" fill="#fff"/><style>{CHART_CSS}</style>')
    # horizontal grid and y labels: 5 steps for a 1x/5x top, 4 for a 2x top (round numbers)
    steps = 4 if round(y_top / 10 ** math.floor(math.log10(y_top))) == 2 else 5
    axis_unit = "" if chart.unit == "cores" else chart.unit  # "cores" is in the title
    for i in range(steps + 1):
        value = y_top * i / steps
        gy = y(value)
        out.append(f'<line class="grid" x1="{left}" y1="{gy:.1f}" x2="{left + plot_w}" y2="{gy:.1f}"/>')
        out.append(
            f'<text class="axis" x="{left - 6}" y="{gy + 4:.1f}" text-anchor="end">'
            f"{escape(format_value(value, axis_unit))}</text>"
        )
    # x ticks
    fmt = _time_format(span)
    for i in range(6):
        ts = chart.start + span * i / 5
        gx = x(ts)
        anchor = "start" if i == 0 else "end" if i == 5 else "middle"
        out.append(
            f'<line class="tick" x1="{gx:.1f}" y1="{top + plot_h}" x2="{gx:.1f}" y2="{top + plot_h + 4}"/>'
        )
        out.append(
            f'<text class="axis" x="{gx:.1f}" y="{height - 8}" text-anchor="{anchor}">'
            f"{escape(fmt(ts))}</text>"
        )
    out.append(f'<rect class="frame" x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="none"/>')
    # revision markers
    for marker in chart.markers:
        if not chart.start <= marker.at <= chart.end:
            continue
        mx = x(marker.at)
        label = escape(marker.label)
        out.append(
            f'<g class="marker"><title>revision {label} applied at {escape(fmt(marker.at))}</title>'
            f'<line x1="{mx:.1f}" y1="{top}" x2="{mx:.1f}" y2="{top + plot_h}"/>'
            f'<text x="{mx - 3 if mx > left + plot_w - 60 else mx + 3:.1f}" y="{top + 10}" '
            f'text-anchor="{"end" if mx > left + plot_w - 60 else "start"}">{label}</text></g>'
        )
    # series
    for index, (series, runs) in enumerate(zip(chart.series, runs_by_series, strict=True)):
        color = PALETTE[index % len(PALETTE)]
        path = []
        for run in runs:
            if len(run) == 1:  # a lone sample between gaps: draw a dot-sized segment so it shows
                ts, value = run[0]
                path.append(f"M{x(ts):.1f},{y(value):.1f}h1.5")
                continue
            path.append("M" + " L".join(f"{x(ts):.1f},{y(value):.1f}" for ts, value in run))
        if path:
            last = runs[-1][-1][1]
            out.append(
                f'<path class="series" data-series="{escape(series.name)}" stroke="{color}" fill="none" '
                f'd="{" ".join(path)}"><title>{escape(series.name)}: last '
                f"{escape(format_value(last, chart.unit))}</title></path>"
            )
    if not values:
        out.append(
            f'<text class="nodata" x="{left + plot_w / 2:.1f}" y="{top + plot_h / 2:.1f}" '
            f'text-anchor="middle">{escape(chart.message or "no data in this range")}</text>'
        )
    # legend
    lx = left + plot_w
    for index, series in reversed(list(enumerate(chart.series))):
        color = PALETTE[index % len(PALETTE)]
        label = escape(series.name)
        lx -= 10 + 7 * len(series.name) + 14
        out.append(
            f'<rect x="{lx:.0f}" y="6" width="10" height="10" fill="{color}"/>'
            f'<text class="legend" x="{lx + 14:.0f}" y="15">{label}</text>'
        )
    out.append("</svg>")
    return "".join(out)
