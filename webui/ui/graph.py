"""Pipeline graphs drawn as SVG on the server (pure: a PipelineGraph in, SVG text out).

Layered layout: each node's column is its longest distance from a source (receivers left, exporters
right); rows within a column follow the mean row of the node's predecessors (one barycenter pass),
which keeps fan-in and fan-out readable without a layout library. Edges carry their signals as
labels. Each node is a `<g class="node" data-node=ID>`; the page's script shows its config on click.
"""

from __future__ import annotations

from collections import defaultdict
from html import escape

from schemas.api import PipelineGraph

NODE_W, NODE_H = 170, 44
COL_GAP, ROW_GAP = 90, 26
MARGIN = 16

CLASS_ORDER = {"receiver": 0, "connector": 1, "processor": 1, "exporter": 2}


def layout(graph: PipelineGraph) -> dict[str, tuple[int, int]]:
    """node id -> (column, row). Tolerates cycles and dangling edges (never loops forever)."""
    ids = [n.id for n in graph.nodes]
    known = set(ids)
    preds: dict[str, list[str]] = defaultdict(list)
    for edge in graph.edges:
        if edge.from_ in known and edge.to in known and edge.from_ != edge.to:
            preds[edge.to].append(edge.from_)
    column: dict[str, int] = {}

    def depth(node: str, seen: frozenset[str]) -> int:
        if node in column:
            return column[node]
        parents = [p for p in preds[node] if p not in seen]
        value = 0 if not parents else 1 + max(depth(p, seen | {node}) for p in parents)
        column[node] = value
        return value

    for node in ids:
        depth(node, frozenset())
    # exporters with no successors line up in the last column
    succs = {e.from_ for e in graph.edges}
    last = max(column.values(), default=0)
    for view in graph.nodes:
        if view.class_ == "exporter" and view.id not in succs:
            column[view.id] = max(column[view.id], last)
    by_column: dict[int, list[str]] = defaultdict(list)
    for node in ids:
        by_column[column[node]].append(node)
    row: dict[str, float] = {}
    result: dict[str, tuple[int, int]] = {}
    for col in sorted(by_column):
        members = by_column[col]

        def key(node: str) -> tuple[float, str]:
            placed = [row[p] for p in preds[node] if p in row]
            return (sum(placed) / len(placed) if placed else 0.0, node)

        members.sort(key=key)
        for index, node in enumerate(members):
            row[node] = float(index)
            result[node] = (col, index)
    return result


def render_graph(graph: PipelineGraph) -> str:
    positions = layout(graph)
    if not positions:
        return '<p class="muted">this pipeline has no nodes</p>'
    cols = max(c for c, _ in positions.values()) + 1
    rows = max(r for _, r in positions.values()) + 1
    width = MARGIN * 2 + cols * NODE_W + (cols - 1) * COL_GAP
    height = MARGIN * 2 + rows * NODE_H + (rows - 1) * ROW_GAP

    def box(node: str) -> tuple[float, float]:
        col, r = positions[node]
        return MARGIN + col * (NODE_W + COL_GAP), MARGIN + r * (NODE_H + ROW_GAP)

    name = escape(graph.name)
    out = [
        f'<svg class="pipeline-graph" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" role="img" aria-label="pipeline {name}">',
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" '
        'markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z"/></marker></defs>',
    ]
    for edge in graph.edges:
        if edge.from_ not in positions or edge.to not in positions:
            continue
        fx, fy = box(edge.from_)
        tx, ty = box(edge.to)
        x1, y1 = fx + NODE_W, fy + NODE_H / 2
        x2, y2 = tx, ty + NODE_H / 2
        if x2 <= x1:  # same or earlier column (a cycle the compiler would reject): arc over the top
            x1, x2 = fx + NODE_W / 2, tx + NODE_W / 2
            y1, y2 = fy, ty
            mid_y = min(fy, ty) - ROW_GAP
            d = f"M{x1:.0f},{y1:.0f} C{x1:.0f},{mid_y:.0f} {x2:.0f},{mid_y:.0f} {x2:.0f},{y2:.0f}"
            lx, ly = (x1 + x2) / 2, mid_y + 4
        else:
            cx = (x1 + x2) / 2
            d = f"M{x1:.0f},{y1:.0f} C{cx:.0f},{y1:.0f} {cx:.0f},{y2:.0f} {x2:.0f},{y2:.0f}"
            lx, ly = cx, (y1 + y2) / 2 - 4
        signals = ", ".join(edge.signals)
        out.append(
            f'<g class="edge" data-from="{escape(edge.from_)}" data-to="{escape(edge.to)}">'
            f'<path d="{d}" fill="none" marker-end="url(#arrow)"/>'
            f'<text x="{lx:.0f}" y="{ly:.0f}" text-anchor="middle">{escape(signals)}</text></g>'
        )
    for node in graph.nodes:
        nx, ny = box(node.id)
        node_id = escape(node.id)
        kind = _clip(f"{node.class_} · {node.type}", 26)
        cls = escape(node.class_)
        out.append(
            f'<g class="node node-{cls}" data-node="{node_id}" tabindex="0" role="button">'
            f"<title>{cls} {node_id} ({escape(node.type)})</title>"
            f'<rect x="{nx}" y="{ny}" width="{NODE_W}" height="{NODE_H}" rx="6"/>'
            f'<text class="node-id" x="{nx + 8}" y="{ny + 18}">{escape(_clip(node.id))}</text>'
            f'<text class="node-type" x="{nx + 8}" y="{ny + 35}">{escape(kind)}</text>'
            "</g>"
        )
    out.append("</svg>")
    return "".join(out)


def _clip(text: str, limit: int = 22) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
