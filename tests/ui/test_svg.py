"""Pure parts of the UI: SVG charts (gaps stay gaps, markers, axis), pipeline graph layout, ranges."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from schemas.api import PipelineGraph
from webui.ui.charts import Chart, Marker, Series, format_value, nice_max, render_chart
from webui.ui.diff import from_text, unified
from webui.ui.graph import layout, render_graph
from webui.ui.timerange import parse_range

NS = "{http://www.w3.org/2000/svg}"


def test_chart_is_valid_svg_with_gaps_markers_and_escaping() -> None:
    points = [(100.0, 1.0), (110.0, 2.0), (120.0, None), (130.0, 4.0), (140.0, 3.0)]
    svg = render_chart(
        Chart(
            title="Logs <in>",
            unit="/s",
            start=100,
            end=200,
            series=[Series("logs_in", points)],
            markers=[Marker(150, "abc1234"), Marker(500, "outside")],
        )
    )
    root = ET.fromstring(svg)
    paths = [p for p in root.iter(f"{NS}path") if p.get("class") == "series"]
    assert len(paths) == 1
    assert paths[0].get("d", "").count("M") == 2  # the None splits the line in two runs
    markers = [g for g in root.iter(f"{NS}g") if g.get("class") == "marker"]
    assert len(markers) == 1 and "abc1234" in ET.tostring(markers[0], encoding="unicode")
    assert "Logs &lt;in&gt;" in svg


def test_chart_without_data_says_so() -> None:
    svg = render_chart(
        Chart(title="CPU", unit="cores", start=0, end=60, series=[Series("cpu", [(10, None)])])
    )
    ET.fromstring(svg)
    assert "no data in this range" in svg


def test_values_and_axis() -> None:
    assert format_value(1536, "bytes") == "1.5 KiB"
    assert format_value(0.25, "cores") == "0.25 cores"
    assert format_value(12500, "/s") == "12.5k/s"
    assert [nice_max(v) for v in (0, 0.7, 3, 10, 11, 4900)] == [1.0, 1.0, 5.0, 10.0, 20.0, 5000.0]
    # memory axes round in binary units: a 33 MiB peak gets a 50 MiB top and 10 MiB steps
    svg = render_chart(
        Chart(title="RSS", unit="bytes", start=0, end=60, series=[Series("memory", [(10, 33 * 2**20)])])
    )
    assert ">50.0 MiB<" in svg and ">10.0 MiB<" in svg


def _graph(edges: list[tuple[str, str]], classes: dict[str, str]) -> PipelineGraph:
    return PipelineGraph.model_validate(
        {
            "name": "p",
            "file": "pipelines/p.yaml",
            "groups": ["g"],
            "signals": ["logs"],
            "nodes": [{"id": n, "class": c, "type": "t"} for n, c in classes.items()],
            "edges": [{"from": a, "to": b, "signals": ["logs"]} for a, b in edges],
        }
    )


def test_layout_puts_receivers_left_and_exporters_right() -> None:
    graph = _graph(
        [("r1", "p"), ("r2", "p"), ("p", "e1"), ("p", "x"), ("x", "e2")],
        {
            "r1": "receiver",
            "r2": "receiver",
            "p": "processor",
            "x": "processor",
            "e1": "exporter",
            "e2": "exporter",
        },
    )
    pos = layout(graph)
    assert pos["r1"][0] == pos["r2"][0] == 0
    assert pos["p"][0] == 1 and pos["x"][0] == 2
    assert pos["e1"][0] == pos["e2"][0] == 3  # sinks line up
    svg = render_graph(graph)
    root = ET.fromstring(svg)
    nodes = [g.get("data-node") for g in root.iter(f"{NS}g") if (g.get("class") or "").startswith("node ")]
    assert sorted(nodes) == ["e1", "e2", "p", "r1", "r2", "x"]


def test_layout_survives_cycles_and_dangling_edges() -> None:
    graph = _graph([("a", "b"), ("b", "a"), ("a", "ghost")], {"a": "processor", "b": "processor"})
    assert set(layout(graph)) == {"a", "b"}
    ET.fromstring(render_graph(graph))


def test_ranges() -> None:
    now = 1_800_000_000.0
    assert parse_range({"range": "15m"}, now).start == now - 900
    assert parse_range({}, now).name == "1h"
    custom = parse_range({"range": "custom", "from": "2027-01-15T08:00", "to": "2027-01-15T09:30"}, now)
    assert custom.end - custom.start == 5400 and custom.error is None
    assert parse_range({"range": "custom", "from": "junk"}, now).error
    assert parse_range({"range": "1y"}, now).error
    assert parse_range({"range": "custom", "from": "2020-01-01T00:00", "to": "2021-01-01T00:00"}, now).error


def test_diff_lines() -> None:
    lines = unified("a\nb\n", "a\nc\n", "old", "new")
    assert [(ln.kind, ln.text) for ln in lines if ln.kind in ("add", "del")] == [("del", "-b"), ("add", "+c")]
    assert unified("same\n", "same\n", "x", "y") == []
    assert [ln.kind for ln in from_text("--- a\n+++ b\n@@ -1 +1 @@\n-x\n+y\n z")] == [
        "file",
        "file",
        "hunk",
        "del",
        "add",
        "ctx",
    ]
