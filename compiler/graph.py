"""Validate one pipeline graph (networkx) and plan its collector pipelines.

A repo pipeline is a DAG of receivers, processors, exporters and connectors whose edges carry signals.
The collector wants linear pipelines: receivers -> one processor chain -> exporters, per signal. The plan
enumerates, per signal, every path source -> processors -> sink (sources: receivers and connectors that
emit the signal; sinks: exporters and connectors that take it) and groups paths by processor chain: all
sources feeding a chain's first processor and all sinks after its last one form one collector pipeline,
which is exactly the graph's data flow. Paths without processors are grouped by source instead, so a
direct r1 -> e1 next to r2 -> e2 never becomes r1 -> e2.
"""

from __future__ import annotations

import difflib
import re
from collections import defaultdict
from collections.abc import Collection
from dataclasses import dataclass
from typing import Literal

import networkx as nx

from compiler.catalog import Catalog, ComponentInfo, signal_order
from compiler.loader import diagnostic
from compiler.naming import model_doc, where
from compiler.repo import LoadedPipeline
from compiler.routes import is_router, route_problems
from schemas.api import PipelineEdgeView, PipelineGraph, PipelineNodeView
from schemas.diagnostics import Diagnostic
from schemas.repo import Node

_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")
# Signals a repo must opt in to on components whose support is not stable (ctrltower.yaml).
GATED_SIGNALS = ("profiles",)
MAX_PATHS = 10_000  # per pipeline and signal: more means a combinatorial graph, reported as CT212

SOURCE_CLASSES = ("receiver", "connector")
SINK_CLASSES = ("exporter", "connector")


@dataclass(frozen=True)
class CollectorPipeline:
    signal: str
    receivers: tuple[str, ...]  # node ids
    processors: tuple[str, ...]
    exporters: tuple[str, ...]


@dataclass(frozen=True)
class PipelinePlan:
    """What one repo pipeline contributes to a group's collector config (node ids, not rendered ids)."""

    name: str
    nodes: dict[str, Node]
    collector_pipelines: tuple[tuple[str, CollectorPipeline], ...]  # (suffix-free name, pipeline)
    edge_signals: tuple[tuple[str, str, tuple[str, ...]], ...]

    def routed_pipelines(self) -> dict[tuple[str, str], list[str]]:
        """(router node, route target node) -> the collector pipelines holding that edge: those the
        router feeds whose chain starts at the target (or, without processors, that export to it)."""
        out: dict[tuple[str, str], list[str]] = {}
        for pname, cp in self.collector_pipelines:
            heads = cp.processors[:1] or cp.exporters
            for r in cp.receivers:
                if _is_router(self.nodes[r]):
                    for head in heads:
                        out.setdefault((r, head), []).append(pname)
        return out


def _is_router(node: Node) -> bool:
    return node.class_ == "connector" and is_router(node.type)


@dataclass(frozen=True)
class GraphResult:
    diagnostics: list[Diagnostic]
    plan: PipelinePlan | None


def _a(word: str) -> str:
    return ("an " if word[0] in "aeiou" else "a ") + word


def component_name(pipeline: str, node: Node) -> str:
    """The collector component id: type/pipeline.name, so pipelines never collide within a group."""
    return f"{node.type}/{pipeline}.{node.name or node.id}"


class _Checker:
    def __init__(self, lp: LoadedPipeline, catalog: Catalog, unstable_signals: frozenset[str]) -> None:
        self.lp = lp
        self.p = lp.model
        self.catalog = catalog
        self.unstable_signals = unstable_signals
        self.diags: list[Diagnostic] = []
        self.doc = model_doc(self.p)  # node ids and edge ends, to name them in key paths

    def diag(
        self,
        code: str,
        message: str,
        path: tuple[str | int, ...],
        *,
        node: str | None = None,
        hint: str | None = None,
        severity: Literal["error", "warning"] = "error",
        key: bool = False,
    ) -> None:
        self.diags.append(
            diagnostic(
                self.lp,
                path,
                code,
                message,
                severity=severity,
                hint=hint,
                at_key=key,
                key_path=where(self.doc, path).key_path,
                pipeline=self.p.name,
                node=node,
            )
        )

    def run(self) -> GraphResult:
        p = self.p
        nodes: dict[str, Node] = {}
        index: dict[str, int] = {}
        infos: dict[str, ComponentInfo] = {}
        rendered: dict[str, str] = {}
        for i, node in enumerate(p.nodes):
            if node.id in nodes:
                self.diag("CT201", f"duplicate node id '{node.id}'", ("nodes", i, "id"), node=node.id)
                continue
            nodes[node.id] = node
            index[node.id] = i
            if node.name is not None and not _NAME_RE.fullmatch(node.name):
                self.diag(
                    "CT308",
                    f"node '{node.id}' has name {node.name!r}, which is not a valid collector instance name",
                    ("nodes", i, "name"),
                    node=node.id,
                    hint="use letters, digits, '_', '.' and '-' (at most 63 characters)",
                )
            cid = component_name(p.name, node)
            if cid in rendered:
                self.diag(
                    "CT308",
                    f"node '{node.id}' renders to the same component id '{cid}' as node '{rendered[cid]}'",
                    ("nodes", i, "name"),
                    node=node.id,
                )
            rendered[cid] = node.id
            info = self.catalog.lookup(node.class_, node.type)
            if info is None:
                self._unknown_type(i, node)
            else:
                infos[node.id] = info

        graph: nx.DiGraph = nx.DiGraph()
        graph.add_nodes_from(nodes)
        edge_signals: dict[tuple[str, str], set[str]] = {}
        for j, edge in enumerate(p.edges):
            label = f"{edge.from_}->{edge.to}"
            bad = False
            for end, nid in (("from", edge.from_), ("to", edge.to)):
                if nid not in nodes:
                    close = [n for n in nodes if n.lower() == nid.lower()] or sorted(
                        difflib.get_close_matches(nid, list(nodes), n=1)
                    )
                    self.diag(
                        "CT202",
                        f"edge {label} names unknown node '{nid}'",
                        ("edges", j, end),
                        node=label,
                        hint=f"did you mean '{close[0]}'?" if close else None,
                    )
                    bad = True
            if bad:
                continue
            src, dst = nodes[edge.from_], nodes[edge.to]
            if dst.class_ == "receiver":
                self.diag(
                    "CT203", f"edge {label} goes into receiver '{dst.id}'", ("edges", j, "to"), node=label
                )
                bad = True
            if src.class_ == "exporter":
                self.diag(
                    "CT204",
                    f"edge {label} comes out of exporter '{src.id}'",
                    ("edges", j, "from"),
                    node=label,
                )
                bad = True
            if bad:
                continue
            signals = edge.signals if edge.signals is not None else p.signals
            key = (edge.from_, edge.to)
            if key in edge_signals:
                self.diag(
                    "CT209", f"edge {label} is listed twice", ("edges", j), node=label, severity="warning"
                )
            for s in signals:
                si, di = infos.get(src.id), infos.get(dst.id)
                if si is not None and s not in si.emits():
                    self.diag(
                        "CT303",
                        f"edge {label} carries {s}, which {src.class_} '{src.id}' ({src.type}) does not emit",
                        ("edges", j),
                        node=label,
                        hint=f"{src.type} emits: {', '.join(signal_order(si.emits())) or 'nothing'}",
                    )
                if di is not None and s not in di.accepts():
                    self.diag(
                        "CT304",
                        f"edge {label} carries {s}, which {dst.class_} '{dst.id}' ({dst.type}) "
                        "does not accept",
                        ("edges", j),
                        node=label,
                        hint=f"{dst.type} accepts: {', '.join(signal_order(di.accepts())) or 'nothing'}",
                    )
            edge_signals.setdefault(key, set()).update(signals)
            graph.add_edge(edge.from_, edge.to)

        self._routes(nodes, index, edge_signals)
        has_cycle = self._cycles(graph, index)
        self._flow(nodes, index, infos, edge_signals)
        self._unstable(nodes, index, infos, edge_signals)
        carried = {s for sigs in edge_signals.values() for s in sigs}
        for s in p.signals:
            if s not in carried:
                self.diag(
                    "CT310",
                    f"signal {s} is declared by the pipeline but no edge carries it",
                    ("signals",),
                    severity="warning",
                )
        if has_cycle or any(d.severity == "error" for d in self.diags):
            return GraphResult(self.diags, None)
        planned = self._plan(nodes, edge_signals)
        if planned is None:
            return GraphResult(self.diags, None)
        edges_out = tuple((a, b, tuple(signal_order(sigs))) for (a, b), sigs in edge_signals.items())
        return GraphResult(self.diags, PipelinePlan(p.name, nodes, planned, edges_out))

    def _routes(
        self, nodes: dict[str, Node], index: dict[str, int], edge_signals: dict[tuple[str, str], set[str]]
    ) -> None:
        """CT312: each route of a routing/failover connector names a node its edges go to."""
        for problem in route_problems(nodes, edge_signals):
            self.diag(
                "CT312",
                problem.message,
                ("nodes", index[problem.router], "config", *problem.path),
                node=problem.router,
                hint=problem.hint,
            )

    def _unstable(
        self,
        nodes: dict[str, Node],
        index: dict[str, int],
        infos: dict[str, ComponentInfo],
        edge_signals: dict[tuple[str, str], set[str]],
    ) -> None:
        """CT311: a signal that is not stable upstream (profiles) on a component whose support for it
        is not stable, without the repo's opt-in (ctrltower.yaml unstable_signals)."""
        touched: dict[str, set[str]] = defaultdict(set)
        for (a, b), sigs in edge_signals.items():
            for s in sigs & set(GATED_SIGNALS):
                touched[a].add(s)
                touched[b].add(s)
        for nid in sorted(touched, key=lambda n: index[n]):
            info, node = infos.get(nid), nodes[nid]
            for s in signal_order(touched[nid] - self.unstable_signals):
                if info is None or s not in info.emits() | info.accepts():
                    continue  # an unknown type or an unsupported signal: CT301 / CT303 / CT304 say so
                level = info.stability_of(s)
                if level == "stable" or (level is None and not info.custom):
                    continue
                what = f"is {level}" if level else "has no known stability (a custom type)"
                self.diag(
                    "CT311",
                    f"node '{nid}' ({node.type}) carries {s}, whose support in {node.type} {what}",
                    ("nodes", index[nid], "type"),
                    node=nid,
                    hint=f"opt in with `unstable_signals: [{s}]` in ctrltower.yaml (the collector also "
                    "needs --feature-gates=+service.profilesSupport)",
                )

    def _unknown_type(self, i: int, node: Node) -> None:
        others = [c for c in self.catalog.classes_of(node.type) if c != node.class_]
        if others:
            hint = f"'{node.type}' is {' and '.join(_a(c) for c in others)}, not {_a(node.class_)}"
        else:
            close = self.catalog.suggest(node.class_, node.type)
            hint = (
                f"did you mean {' or '.join(repr(c) for c in close)}?"
                if close
                else "declare custom components in ctrltower.yaml under components:"
            )
        self.diag(
            "CT301",
            f"unknown {node.class_} type '{node.type}' (node '{node.id}')",
            ("nodes", i, "type"),
            node=node.id,
            hint=hint,
        )

    def _cycles(self, graph: nx.DiGraph, index: dict[str, int]) -> bool:
        found = False
        for comp in nx.strongly_connected_components(graph):
            if len(comp) == 1:
                (only,) = comp
                if not graph.has_edge(only, only):
                    continue
            found = True
            start = min(comp, key=lambda n: index[n])
            cycle = nx.find_cycle(graph.subgraph(comp), source=start)
            names = [a for a, _ in cycle] + [cycle[0][0]]
            first_edge = self._edge_index(cycle[0][0], cycle[0][1])
            self.diag(
                "CT205",
                f"cycle: {' -> '.join(names)}",
                ("edges", first_edge) if first_edge is not None else ("nodes", index[start]),
                node=f"{cycle[0][0]}->{cycle[0][1]}",
            )
        return found

    def _edge_index(self, a: str, b: str) -> int | None:
        for j, e in enumerate(self.p.edges):
            if e.from_ == a and e.to == b:
                return j
        return None

    def _flow(
        self,
        nodes: dict[str, Node],
        index: dict[str, int],
        infos: dict[str, ComponentInfo],
        edge_signals: dict[tuple[str, str], set[str]],
    ) -> None:
        ins: dict[str, set[str]] = defaultdict(set)
        outs: dict[str, set[str]] = defaultdict(set)
        touched: set[str] = set()
        for (a, b), sigs in edge_signals.items():
            outs[a].update(sigs)
            ins[b].update(sigs)
            touched.update((a, b))
        referenced = {e.from_ for e in self.p.edges} | {e.to for e in self.p.edges}
        for nid, node in nodes.items():
            at = ("nodes", index[nid])
            if nid not in referenced:
                self.diag("CT206", f"{node.class_} '{nid}' has no edges", at, node=nid)
                continue
            if nid not in touched:
                continue  # its edges were all invalid and reported already
            cls = node.class_
            if cls == "processor":
                for s in signal_order(ins[nid] - outs[nid]):
                    self.diag(
                        "CT207",
                        f"{s} reaching processor '{nid}' never reaches an exporter",
                        at,
                        node=nid,
                        hint=f"add an edge from '{nid}' carrying {s}",
                    )
                for s in signal_order(outs[nid] - ins[nid]):
                    self.diag(
                        "CT208",
                        f"processor '{nid}' sends {s} that no receiver feeds it",
                        at,
                        node=nid,
                    )
            elif cls == "receiver" and not outs[nid]:
                self.diag("CT207", f"receiver '{nid}' never reaches an exporter", at, node=nid)
            elif cls == "exporter" and not ins[nid]:
                self.diag("CT208", f"exporter '{nid}' receives nothing", at, node=nid)
            elif cls == "connector":
                self._connector(nid, node, at, infos.get(nid), ins[nid], outs[nid])

    def _connector(
        self,
        nid: str,
        node: Node,
        at: tuple[str | int, ...],
        info: ComponentInfo | None,
        ins: set[str],
        outs: set[str],
    ) -> None:
        if not ins or not outs:
            self.diag(
                "CT305",
                f"connector '{nid}' needs edges in and out (it is an exporter in one collector "
                "pipeline and a receiver in another)",
                at,
                node=nid,
            )
            return
        if info is None:
            return
        # CT305 both ways: an input signal it cannot turn into any output, an output no input feeds
        supported = "supported pairs: " + ", ".join(f"{a}->{b}" for a, b in sorted(info.pairs))
        for s in signal_order(ins):
            if not any((s, o) in info.pairs for o in outs):
                into = " or ".join(signal_order(outs))
                message = f"connector '{nid}' ({node.type}) receives {s} but cannot turn it into {into}"
                self.diag("CT305", message, at, node=nid, hint=supported)
        for o in signal_order(outs):
            if not any((s, o) in info.pairs for s in ins):
                inputs = ", ".join(signal_order(ins))
                message = (
                    f"connector '{nid}' ({node.type}) sends {o} but none of its inputs ({inputs})"
                    f" turns into {o}"
                )
                self.diag("CT305", message, at, node=nid, hint=supported)

    def _plan(
        self, nodes: dict[str, Node], edge_signals: dict[tuple[str, str], set[str]]
    ) -> tuple[tuple[str, CollectorPipeline], ...] | None:
        name = self.p.name
        result: list[tuple[str, CollectorPipeline]] = []
        for signal in signal_order({s for sigs in edge_signals.values() for s in sigs}):
            succ: dict[str, list[str]] = defaultdict(list)
            for (a, b), sigs in edge_signals.items():
                if signal in sigs:
                    succ[a].append(b)
            chains: dict[tuple[str, ...], tuple[set[str], set[str]]] = {}
            direct: dict[tuple[str, str], set[str]] = {}
            count = 0
            for source in sorted(succ):
                if nodes[source].class_ not in SOURCE_CLASSES:
                    continue
                stack: list[tuple[str, tuple[str, ...]]] = [(source, ())]
                while stack:
                    at, chain = stack.pop()
                    for nxt in succ.get(at, ()):
                        cls = nodes[nxt].class_
                        if cls == "processor":
                            stack.append((nxt, (*chain, nxt)))
                            continue
                        count += 1
                        if count > MAX_PATHS:
                            self.diag(
                                "CT212",
                                f"{signal} has more than {MAX_PATHS} distinct paths; simplify the graph",
                                ("edges",),
                            )
                            return None
                        if chain:
                            recv, exp = chains.setdefault(chain, (set(), set()))
                            recv.add(source)
                            exp.add(nxt)
                        else:
                            # a router's routes are separate pipelines: group its direct paths per sink
                            key = (source, nxt if _is_router(nodes[source]) else "")
                            direct.setdefault(key, set()).add(nxt)
            layouts = [
                CollectorPipeline(signal, tuple(sorted(r)), chain, tuple(sorted(e)))
                for chain, (r, e) in chains.items()
            ] + [CollectorPipeline(signal, (src,), (), tuple(sorted(e))) for (src, _), e in direct.items()]
            layouts.sort(key=lambda cp: (cp.processors, cp.receivers, cp.exporters))
            for k, cp in enumerate(layouts, start=1):
                suffix = f"{signal}/{name}" if len(layouts) == 1 else f"{signal}/{name}.{k}"
                result.append((suffix, cp))
        return tuple(result)


def check_pipeline(
    lp: LoadedPipeline, catalog: Catalog, unstable_signals: Collection[str] = ()
) -> GraphResult:
    """Every graph, component and signal problem of one pipeline; a plan when there is none.
    unstable_signals: the signals the repo opted in to (ctrltower.yaml)."""
    return _Checker(lp, catalog, frozenset(unstable_signals)).run()


def graph_view(lp: LoadedPipeline, plan: PipelinePlan | None) -> PipelineGraph:
    """The pipeline as the API shows it: node configs before templating, edges with their signals
    (as planned when the pipeline is valid, as written otherwise)."""
    p = lp.model
    if plan is not None:
        edges = [
            PipelineEdgeView.model_validate({"from": a, "to": b, "signals": list(sigs)})
            for a, b, sigs in plan.edge_signals
        ]
    else:
        edges = [
            PipelineEdgeView.model_validate(
                {"from": e.from_, "to": e.to, "signals": e.signals if e.signals is not None else p.signals}
            )
            for e in p.edges
        ]
    return PipelineGraph(
        name=p.name,
        file=lp.file,
        groups=list(p.groups),
        signals=list(p.signals),
        nodes=[
            PipelineNodeView.model_validate(
                {"id": n.id, "class": n.class_, "type": n.type, "config": n.config}
            )
            for n in p.nodes
        ],
        edges=edges,
    )
