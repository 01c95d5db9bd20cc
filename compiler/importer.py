"""Import an existing collector config into repo files (pure: text in, {path: text} out).

Each collector pipeline `signal[/name]` becomes part of ONE repo pipeline graph (compiler/import_graph.py):
rendering the result gives the same data flow per signal: the same receivers, processor chains,
connectors and exporters with the same configs.

The steps: read the config (compiler/collector_config.py), build the graph, warn about what is not
imported, declare in ctrltower.yaml the component types the catalog lacks (vendor builds) or uses
it says a type does not support, then write the pipeline, group and settings files. Literal
`{{ }}` / `{% %}` text is wrapped so the templating step gives it back verbatim. Extensions go into
the group file. `service.telemetry` is not imported: ctrltower renders its own (the agent reads the
collector's metrics through it).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from compiler.catalog import Catalog, builtin_catalog, signal_order
from compiler.collector_config import SECTION_CLASS, CollectorConfig, read_collector_config
from compiler.graph import GATED_SIGNALS
from compiler.import_graph import ImportGraph, escape, type_of
from compiler.jsonschema import json_schemas
from compiler.loader import LoadError, Path, Source, diagnostic, dump_yaml, load_yaml
from compiler.repo import SETTINGS_FILES
from compiler.routes import is_router, rewrite_routes
from schemas.diagnostics import Diagnostic

SCHEMA_DIR = ".schema"  # import writes the JSON Schema here so editors validate the new files


def _schema_comment(kind: str, depth: int) -> str:
    return f"# yaml-language-server: $schema={'../' * depth}{SCHEMA_DIR}/{kind}.schema.json\n"


@dataclass
class ImportResult:
    files: dict[str, str] = field(default_factory=dict)  # repo path -> new content
    diagnostics: list[Diagnostic] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not any(d.severity == "error" for d in self.diagnostics)


class _Import:
    """One import run: the config, the result being filled, and the steps in order."""

    def __init__(
        self,
        cfg: CollectorConfig,
        result: ImportResult,
        catalog: Catalog,
        existing: Mapping[str, bytes | str],
    ) -> None:
        self.cfg = cfg
        self.result = result
        self.catalog = catalog
        self.existing = existing
        self.graph = ImportGraph(cfg, self.report)
        self.declare: list[dict[str, Any]] = []
        self.extensions: dict[str, Any] = {}
        self.unstable: list[str] = []  # signals the repo must opt in to (ctrltower.yaml)

    def report(
        self,
        code: str,
        message: str,
        severity: Literal["error", "warning"] = "error",
        path: Path = (),
        hint: str | None = None,
    ) -> None:
        """A diagnostic at path in the collector config, in the file that wrote it."""
        self.result.diagnostics.append(
            diagnostic(self.cfg.origin(path), path, code, message, severity=severity, hint=hint, at_key=True)
        )

    def telemetry(self) -> None:
        """service.telemetry is ctrltower's to render: say so."""
        if "telemetry" in self.cfg.service:
            self.report(
                "CT605",
                "service.telemetry is not imported: ctrltower renders its own "
                "(metrics on loopback for the agent)",
                "warning",
                ("service", "telemetry"),
            )

    def not_imported(self) -> None:
        """Warnings for what import leaves out: unused components, routing connectors."""
        components = self.cfg.components
        for section in SECTION_CLASS:
            for cid in sorted(components[section]):
                if (section, cid) not in self.graph.used:
                    self.report(
                        "CT606",
                        f"{SECTION_CLASS[section]} '{cid}' is defined but used by no pipeline; not imported",
                        "warning",
                        (section, cid),
                    )

    def routes(self) -> None:
        """Routing and failover connectors name collector pipelines; in the repo a route names the node
        the connector's edge into that pipeline goes to. A route to a pipeline that is not imported or
        does not receive from the connector is dropped (CT607)."""
        graph = self.graph
        by_node = {nid: cid for (cls, cid), nid in graph.shared.items() if cls == "connector"}
        for node in graph.nodes:
            if node["class"] != "connector" or not is_router(node["type"]) or "config" not in node:
                continue
            nid, cid = node["id"], by_node[node["id"]]

            def to_nodes(pid: str, nid: str = nid, cid: str = cid) -> list[str]:
                if nid in graph.sources.get(pid, []):
                    return graph.heads[pid]
                self.report(
                    "CT607",
                    f"connector '{cid}' routes to pipeline '{pid}', which is not imported or does not "
                    "receive from it; that route is left out",
                    "warning",
                    ("connectors", cid),
                )
                return []

            node["config"] = rewrite_routes(node["type"], node["config"], to_nodes)

    def declarations(self) -> None:
        """Types to declare in ctrltower.yaml: unknown to the catalog, or used beyond what it lists."""
        cat, graph = self.catalog, self.graph
        for (cls, type_), sigs in sorted(graph.usage.items()):
            info = cat.lookup(cls, type_)
            if info is None or not sigs <= info.signals:
                have = set(info.signals) if info is not None else set()
                self.declare.append({"type": type_, "class": cls, "signals": signal_order(sigs | have)})
        conn_pairs: dict[str, set[tuple[str, str]]] = {}
        for cid in set(graph.conn_in) | set(graph.conn_out):
            pairs = {(i, o) for i in graph.conn_in.get(cid, set()) for o in graph.conn_out.get(cid, set())}
            conn_pairs.setdefault(type_of(cid), set()).update(pairs)
        for type_, pairs in sorted(conn_pairs.items()):
            info = cat.lookup("connector", type_)
            if info is None or not pairs <= info.pairs:
                allp = pairs | (set(info.pairs) if info is not None else set())
                self.declare.append(
                    {"type": type_, "class": "connector", "pairs": [list(p) for p in sorted(allp)]}
                )

    def enabled_extensions(self) -> None:
        """The extensions service.extensions enables (to the group file); the rest are warned about."""
        defined = self.cfg.components["extensions"]
        enabled = self.cfg.service.get("extensions") or []
        for ext in [str(e) for e in enabled] if isinstance(enabled, list) else []:
            self.extensions[ext] = escape(defined.get(ext))
            if self.catalog.lookup("extension", type_of(ext)) is None:
                self.declare.append({"type": type_of(ext), "class": "extension"})
        for ext in sorted(defined):
            if ext not in self.extensions:
                self.report("CT606", f"extension '{ext}' is defined but not enabled; not imported", "warning")

    def pipeline_file(self, name: str, group: str) -> bool:
        """pipelines/<name>.yaml; False (CT604) when it exists already."""
        path = f"pipelines/{name}.yaml"
        if any(p in self.existing for p in (path, f"pipelines/{name}.yml")):
            self.report("CT604", f"{path} already exists; choose another --pipeline name")
            return False
        signals = signal_order(self.graph.signals)
        edge_list: list[dict[str, Any]] = []
        for (a, b), sigs in self.graph.edges.items():
            edge: dict[str, Any] = {"from": a, "to": b}
            if set(sigs) != set(signals):
                edge["signals"] = signal_order(sigs)
            edge_list.append(edge)
        doc = {
            "kind": "Pipeline",
            "name": name,
            "description": f"imported from {self.cfg.name}",
            "groups": [group],
            "signals": signals,
            "nodes": self.graph.nodes,
            "edges": edge_list,
        }
        self.result.files[path] = _schema_comment("pipeline", 1) + dump_yaml(doc)
        return True

    def group_file(self, group: str) -> bool:
        """groups/<group>.yaml, new or with the extensions added; False (CT604) on a conflict."""
        path = f"groups/{group}.yaml"
        old_group = self.existing.get(path)
        if old_group is None:
            doc: dict[str, Any] = {
                "kind": "AgentGroup",
                "name": group,
                "description": f"imported from {self.cfg.name}",
                "selector": {"group": group},
            }
            if self.extensions:
                doc["extensions"] = self.extensions
            self.result.files[path] = _schema_comment("agent-group", 1) + dump_yaml(doc)
        elif self.extensions:
            old = _existing_mapping(old_group, path, self.result)
            if old is None:
                return False
            merged = dict(old.get("extensions") or {})
            if any(merged.get(k, v) != v for k, v in self.extensions.items()):
                self.report("CT604", f"{path} already has different configs for some of these extensions")
                return False
            if not all(k in merged for k in self.extensions):
                merged.update(self.extensions)
                old["extensions"] = merged
                self.result.files[path] = _schema_comment("agent-group", 1) + dump_yaml(old)
        return True

    def unstable_signals(self) -> None:
        """Profiles pipelines are imported with the repo's opt-in to them (CT609 says so)."""
        gated: list[str] = [s for s in signal_order(self.graph.signals) if s in GATED_SIGNALS]
        if gated:
            self.unstable = gated
            pids = sorted(str(p) for p in self.cfg.pipelines if str(p).split("/", 1)[0] in gated)
            self.report(
                "CT609",
                f"{', '.join(gated)} is not stable in the collector: ctrltower.yaml opts in "
                f"(unstable_signals: [{', '.join(gated)}]) so {', '.join(pids)} can be imported",
                "warning",
                ("service", "pipelines", pids[0]),
                "run the collector with --feature-gates=+service.profilesSupport",
            )

    def settings_file(self) -> bool:
        """ctrltower.yaml with the declared component types and the signal opt-in added; False when it
        does not load."""
        if not self.declare and not self.unstable:
            return True
        path = next((p for p in SETTINGS_FILES if p in self.existing), SETTINGS_FILES[0])
        raw = self.existing.get(path)
        loaded = _existing_mapping(raw, path, self.result) if raw is not None else {}
        if loaded is None:
            return False
        settings = loaded or {"kind": "Settings"}
        declared = {(c.get("class"), c.get("type")) for c in settings.get("components") or []}
        new = [d for d in self.declare if (d["class"], d["type"]) not in declared]
        opted = list(settings.get("unstable_signals") or [])
        more = [s for s in self.unstable if s not in opted]
        if new:
            settings["components"] = [*(settings.get("components") or []), *new]
        if more:
            settings["unstable_signals"] = [*opted, *more]
        if new or more:
            self.result.files[path] = _schema_comment("settings", 0) + dump_yaml(settings)
        return True

    def schema_files(self) -> None:
        for filename, text in json_schemas().items():
            if f"{SCHEMA_DIR}/{filename}" not in self.existing:
                self.result.files[f"{SCHEMA_DIR}/{filename}"] = text


def import_collector_config(
    source: bytes | str,
    *,
    group: str,
    pipeline: str | None = None,
    existing: Mapping[str, bytes | str] | None = None,
    source_name: str = "collector.yaml",
    catalog: Catalog | None = None,
) -> ImportResult:
    """Turn one collector config into repo files for `group` (pipeline name defaults to the group)."""
    return import_collector_configs(
        [(source_name, source)], group=group, pipeline=pipeline, existing=existing, catalog=catalog
    )


def import_collector_configs(
    sources: Sequence[tuple[str, bytes | str]],
    *,
    group: str,
    pipeline: str | None = None,
    existing: Mapping[str, bytes | str] | None = None,
    catalog: Catalog | None = None,
) -> ImportResult:
    """Turn a collector config given as one or more files [(name, content)], merged in order as
    `otelcol --config A --config B` does, into repo files for `group`."""
    result = ImportResult()
    if not sources:
        raise ValueError("import needs at least one collector config file")
    cfg = read_collector_config(sources, result.diagnostics)
    if cfg is None:
        return result
    run = _Import(cfg, result, catalog or builtin_catalog(), existing or {})
    run.telemetry()
    run.graph.add_pipelines()
    run.routes()
    run.not_imported()
    if not run.graph.nodes:
        if result.ok:  # fragments (CT608) already say why nothing is left
            run.report(
                "CT601", "no pipeline of a supported signal (traces, metrics, logs, profiles) to import"
            )
        return result
    run.declarations()
    run.unstable_signals()
    run.enabled_extensions()
    if run.pipeline_file(pipeline or group, group) and run.group_file(group) and run.settings_file():
        run.schema_files()
    return result


def _existing_mapping(raw: bytes | str, path: str, result: ImportResult) -> dict[str, Any] | None:
    """An existing repo file to merge into, read with the project's loader and its limits (an alias
    bomb in a group file is CT107 before anything is expanded; dumping it back would write it out in
    full). None, with the diagnostic added to `result`, when it does not load as a mapping."""
    try:
        loaded, _ = load_yaml(raw)
    except LoadError as err:
        result.diagnostics.append(err.diagnostic(path))
        return None
    data = loaded.data if loaded is not None else None
    if data is None:
        return {}
    if not isinstance(data, dict):
        result.diagnostics.append(
            diagnostic(
                Source(path),
                (),
                "CT103",
                "the top level must be a mapping (with kind:) to merge the import into it",
            )
        )
        return None
    return data
