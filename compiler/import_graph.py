"""Import, step 2: collector pipelines -> one repo pipeline graph (nodes and signal-carrying edges).

Receivers, exporters and connectors become nodes shared by the collector pipelines that use them;
processors become one node per (collector pipeline, processor), because a collector processor chain
is linear per pipeline and sharing a node would merge flows that were separate. Along the way it
records which signals each component type carries, so import can declare what the catalog lacks.
"""

from __future__ import annotations

import hashlib
import itertools
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from compiler.collector_config import SECTION_CLASS, CollectorConfig
from compiler.loader import Path
from compiler.template import escape_literal
from schemas.common import PIPELINE_SIGNALS

SUPPORTED = PIPELINE_SIGNALS
_NODE_ID_BAD = re.compile(r"[^A-Za-z0-9_.-]")

# diag(code, message, severity, path, hint): report a problem at a path of the collector config
Report = Callable[[str, str, Literal["error", "warning"], Path, str | None], None]


def node_id(raw: str, taken: set[str]) -> str:
    """A valid, unused node id for a collector component id (or pipeline.processor)."""
    base = _NODE_ID_BAD.sub("_", raw.replace("/", "."))
    if not base or not base[0].isalnum():
        base = "n" + base
    if len(base) > 55:
        base = base[:46] + "-" + hashlib.sha256(raw.encode()).hexdigest()[:8]
    candidate, n = base, 2
    while candidate in taken:
        candidate = f"{base}-{n}"
        n += 1
    taken.add(candidate)
    return candidate


def escape(value: Any) -> Any:
    """Literal `{{ }}` / `{% %}` text wrapped so the templating step gives it back verbatim."""
    if isinstance(value, str):
        return escape_literal(value)
    if isinstance(value, dict):
        return {k: escape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [escape(v) for v in value]
    return value


def type_of(cid: str) -> str:
    return cid.split("/", 1)[0]


@dataclass
class ImportGraph:
    """The repo pipeline being built, and what import learnt about the components on the way."""

    cfg: CollectorConfig
    report: Report
    nodes: list[dict[str, Any]] = field(default_factory=list)
    edges: dict[tuple[str, str], set[str]] = field(default_factory=dict)
    usage: dict[tuple[str, str], set[str]] = field(default_factory=dict)  # (class, type) -> signals
    conn_in: dict[str, set[str]] = field(default_factory=dict)  # connector id -> signals it takes
    conn_out: dict[str, set[str]] = field(default_factory=dict)  # connector id -> signals it emits
    used: set[tuple[str, str]] = field(default_factory=set)  # (section, collector id)
    signals: set[str] = field(default_factory=set)
    # collector pipeline id -> the nodes its data enters after its receivers (first processor, or the
    # exporters), and the nodes it receives from: a router's route to that pipeline is an edge to those
    heads: dict[str, list[str]] = field(default_factory=dict)
    sources: dict[str, list[str]] = field(default_factory=dict)
    _taken: set[str] = field(default_factory=set)
    shared: dict[tuple[str, str], str] = field(default_factory=dict)  # (class, collector id) -> node id

    def add_pipelines(self) -> None:
        for pid in sorted(self.cfg.pipelines):
            self.add_pipeline(str(pid), self.cfg.pipelines[pid])

    def add_pipeline(self, pid: str, spec: Any) -> None:
        """One collector pipeline: its receivers feed its processor chain, which feeds its exporters."""
        at: Path = ("service", "pipelines", pid)
        signal = pid.split("/", 1)[0]
        if signal not in SUPPORTED:
            self.report(
                "CT602",
                f"pipeline {pid}: signal '{signal}' is not supported by ctrltower; skipped",
                "warning",
                at,
                None,
            )
            return
        spec = spec or {}
        if not isinstance(spec, dict):
            self.report("CT601", f"pipeline {pid} must be a mapping", "error", at, None)
            return
        if not spec.get("receivers") or not spec.get("exporters"):
            self.report(
                "CT608",
                f"pipeline {pid} has no {'receivers' if not spec.get('receivers') else 'exporters'}: "
                "this looks like a fragment of a config merged from several files",
                "error",
                at,
                "import it together with the files the collector merges it with, in the same order: "
                "ctrltower import base.yaml overlay.yaml ...",
            )
            return
        self.signals.add(signal)
        connectors = self.cfg.components["connectors"]
        recv_ids = [str(x) for x in spec.get("receivers") or []]
        exp_ids = [str(x) for x in spec.get("exporters") or []]
        recvs = [self._shared_node("receivers", c, pid) for c in recv_ids]
        exps = [self._shared_node("exporters", c, pid) for c in exp_ids]
        for c in recv_ids:
            if c in connectors:
                self.conn_out.setdefault(c, set()).add(signal)
            else:
                self.usage.setdefault(("receiver", type_of(c)), set()).add(signal)
        for c in exp_ids:
            if c in connectors:
                self.conn_in.setdefault(c, set()).add(signal)
            else:
                self.usage.setdefault(("exporter", type_of(c)), set()).add(signal)
        procs = [self._processor(pid, str(c), signal) for c in spec.get("processors") or []]
        chain_heads = [procs[0]] if procs else exps
        self.heads[pid], self.sources[pid] = chain_heads, recvs
        for r in recvs:
            for head in chain_heads:
                self.edges.setdefault((r, head), set()).add(signal)
        for a, b in itertools.pairwise(procs):
            self.edges.setdefault((a, b), set()).add(signal)
        if procs:
            for e in exps:
                self.edges.setdefault((procs[-1], e), set()).add(signal)

    def _undefined(self, pid: str, cls: str, cid: str) -> None:
        self.report(
            "CT603",
            f"pipeline {pid} uses {cls} '{cid}', which the config does not define; imported without config",
            "warning",
            ("service", "pipelines", pid),
            None,
        )

    def _shared_node(self, section: str, cid: str, pid: str) -> str:
        """The node of a receiver, exporter or connector: one per collector id, shared by pipelines."""
        is_connector = cid in self.cfg.components["connectors"]
        cls = "connector" if is_connector else SECTION_CLASS[section]
        sec = "connectors" if is_connector else section
        key = (cls, cid)
        if key in self.shared:
            return self.shared[key]
        if cid not in self.cfg.components[sec]:
            self._undefined(pid, cls, cid)
        nid = node_id(cid, self._taken)
        self.shared[key] = nid
        node: dict[str, Any] = {"id": nid, "class": cls, "type": type_of(cid)}
        config = self.cfg.components[sec].get(cid)
        if config is not None:
            node["config"] = escape(config)
        self.nodes.append(node)
        self.used.add((sec, cid))
        return nid

    def _processor(self, pid: str, cid: str, signal: str) -> str:
        """A processor's node: one per (collector pipeline, processor), so chains stay separate."""
        nid = node_id(f"{pid}.{cid}", self._taken)
        node: dict[str, Any] = {"id": nid, "class": "processor", "type": type_of(cid)}
        processors = self.cfg.components["processors"]
        if cid not in processors:
            self._undefined(pid, "processor", cid)
        elif processors[cid] is not None:
            node["config"] = escape(processors[cid])
        self.nodes.append(node)
        self.used.add(("processors", cid))
        self.usage.setdefault(("processor", type_of(cid)), set()).add(signal)
        return nid
