"""Import an existing collector config into repo files (pure: text in, {path: text} out).

Each collector pipeline `signal[/name]` becomes part of ONE repo pipeline graph: receivers, exporters
and connectors become nodes shared by the collector pipelines that use them; processors become one
node per (collector pipeline, processor), because a collector processor chain is linear per pipeline and
sharing a node would merge flows that were separate. Rendering the result gives the same data flow per
signal: the same receivers, processor chains, connectors and exporters with the same configs.

Component types the catalog lacks (vendor builds), or uses the catalog says a type does not support,
are declared in ctrltower.yaml so the repo validates. Literal `{{ }}` / `{% %}` text is wrapped so the
templating step gives it back verbatim. Extensions go into the group file. `service.telemetry` is not
imported: ctrltower renders its own (the agent reads the collector's metrics through it).
"""

from __future__ import annotations

import hashlib
import itertools
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from compiler.catalog import Catalog, builtin_catalog, signal_order
from compiler.jsonschema import json_schemas
from compiler.loader import LoadError, Source, diagnostic, dump_yaml, load_yaml
from compiler.repo import SETTINGS_FILES
from compiler.template import escape_literal
from schemas.diagnostics import Diagnostic

SECTION_CLASS = {
    "receivers": "receiver",
    "processors": "processor",
    "exporters": "exporter",
    "connectors": "connector",
}
SUPPORTED = ("traces", "metrics", "logs")
_NODE_ID_BAD = re.compile(r"[^A-Za-z0-9_.-]")
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


def _node_id(raw: str, taken: set[str]) -> str:
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


def _escape(value: Any) -> Any:
    if isinstance(value, str):
        return escape_literal(value)
    if isinstance(value, dict):
        return {k: _escape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_escape(v) for v in value]
    return value


def _type_of(cid: str) -> str:
    return cid.split("/", 1)[0]


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
    cat = catalog or builtin_catalog()
    existing = existing or {}
    result = ImportResult()
    name = pipeline or group

    src = Source(source_name)

    def diag(
        code: str,
        message: str,
        severity: Literal["error", "warning"] = "error",
        path: tuple[str | int, ...] = (),
        hint: str | None = None,
    ) -> None:
        result.diagnostics.append(
            diagnostic(src, path, code, message, severity=severity, hint=hint, at_key=True)
        )

    try:
        loaded, _ = load_yaml(source)
    except LoadError as err:
        result.diagnostics.append(err.diagnostic(source_name))
        return result
    doc = loaded.data if loaded is not None else None
    if not isinstance(doc, dict) or not isinstance(doc.get("service"), dict):
        diag("CT601", "not a collector config: expected a mapping with a 'service' section")
        return result
    if loaded is not None:
        src = Source(source_name, loaded.positions)

    components: dict[str, dict[str, Any]] = {}
    for section in (*SECTION_CLASS, "extensions"):
        value = doc.get(section)
        if value is None:
            components[section] = {}
        elif isinstance(value, dict):
            components[section] = value
        else:
            diag("CT601", f"'{section}' must be a mapping", path=(section,))
            return result
    service = doc["service"]
    pipelines = service.get("pipelines")
    if not isinstance(pipelines, dict) or not pipelines:
        diag("CT601", "service.pipelines is missing or empty", path=("service",))
        return result
    if "telemetry" in service:
        diag(
            "CT605",
            "service.telemetry is not imported: ctrltower renders its own "
            "(metrics on loopback for the agent)",
            "warning",
            (
                "service",
                "telemetry",
            ),
        )

    taken: set[str] = set()
    shared_ids: dict[tuple[str, str], str] = {}  # (class, collector id) -> node id
    nodes: list[dict[str, Any]] = []
    edges: dict[tuple[str, str], set[str]] = {}
    usage: dict[tuple[str, str], set[str]] = {}  # (class, type) -> signals (connectors: "in>out" marks)
    conn_in: dict[str, set[str]] = {}
    conn_out: dict[str, set[str]] = {}
    used: set[tuple[str, str]] = set()
    signals_used: set[str] = set()

    def node_for(section: str, cid: str, pid: str) -> str | None:
        cls = (
            "connector"
            if cid in components["connectors"] and section != "processors"
            else SECTION_CLASS[section]
        )
        sec = "connectors" if cls == "connector" else section
        key = (cls, cid)
        if key in shared_ids:
            return shared_ids[key]
        if cid not in components[sec]:
            diag(
                "CT603",
                f"pipeline {pid} uses {cls} '{cid}', which the config does not define; "
                "imported without config",
                "warning",
                (
                    "service",
                    "pipelines",
                    pid,
                ),
            )
        nid = _node_id(cid, taken)
        shared_ids[key] = nid
        node: dict[str, Any] = {"id": nid, "class": cls, "type": _type_of(cid)}
        config = components[sec].get(cid)
        if config is not None:
            node["config"] = _escape(config)
        nodes.append(node)
        used.add((sec, cid))
        return nid

    for pid in sorted(pipelines):
        spec = pipelines[pid] or {}
        signal = str(pid).split("/", 1)[0]
        if signal not in SUPPORTED:
            diag(
                "CT602",
                f"pipeline {pid}: signal '{signal}' is not supported by ctrltower; skipped",
                "warning",
                (
                    "service",
                    "pipelines",
                    pid,
                ),
            )
            continue
        if not isinstance(spec, dict):
            diag(
                "CT601",
                f"pipeline {pid} must be a mapping",
                path=(
                    "service",
                    "pipelines",
                    pid,
                ),
            )
            continue
        if not spec.get("receivers") or not spec.get("exporters"):
            diag(
                "CT608",
                f"pipeline {pid} has no {'receivers' if not spec.get('receivers') else 'exporters'}: "
                "this looks like a fragment of a config merged from several files",
                path=(
                    "service",
                    "pipelines",
                    pid,
                ),
                hint="merge the files into one config first (otelcol --config a.yaml --config b.yaml "
                "print-config, or by hand)",
            )
            continue
        signals_used.add(signal)
        recv_ids = [str(x) for x in spec.get("receivers") or []]
        exp_ids = [str(x) for x in spec.get("exporters") or []]
        proc_ids = [str(x) for x in spec.get("processors") or []]
        recvs = [n for n in (node_for("receivers", c, pid) for c in recv_ids) if n]
        exps = [n for n in (node_for("exporters", c, pid) for c in exp_ids) if n]
        for c in recv_ids:
            if c in components["connectors"]:
                conn_out.setdefault(c, set()).add(signal)
            else:
                usage.setdefault(("receiver", _type_of(c)), set()).add(signal)
        for c in exp_ids:
            if c in components["connectors"]:
                conn_in.setdefault(c, set()).add(signal)
            else:
                usage.setdefault(("exporter", _type_of(c)), set()).add(signal)
        procs: list[str] = []
        for c in proc_ids:
            nid = _node_id(f"{pid}.{c}", taken)
            node = {"id": nid, "class": "processor", "type": _type_of(c)}
            if c not in components["processors"]:
                diag(
                    "CT603",
                    f"pipeline {pid} uses processor '{c}', which the config does not define; "
                    "imported without config",
                    "warning",
                    (
                        "service",
                        "pipelines",
                        pid,
                    ),
                )
            elif components["processors"][c] is not None:
                node["config"] = _escape(components["processors"][c])
            nodes.append(node)
            used.add(("processors", c))
            usage.setdefault(("processor", _type_of(c)), set()).add(signal)
            procs.append(nid)
        chain_heads = [procs[0]] if procs else exps
        for r in recvs:
            for head in chain_heads:
                edges.setdefault((r, head), set()).add(signal)
        for a, b in itertools.pairwise(procs):
            edges.setdefault((a, b), set()).add(signal)
        if procs:
            for e in exps:
                edges.setdefault((procs[-1], e), set()).add(signal)

    for section in SECTION_CLASS:
        for cid in sorted(components[section]):
            if (section, cid) not in used:
                diag(
                    "CT606",
                    f"{SECTION_CLASS[section]} '{cid}' is defined but used by no pipeline; not imported",
                    "warning",
                    (
                        section,
                        cid,
                    ),
                )
    for cid in sorted(components["connectors"]):
        if cid == "routing" or _type_of(cid) == "routing":
            diag(
                "CT607",
                f"connector '{cid}' names collector pipelines in its config; ctrltower renames pipelines, "
                "so review its routes after import",
                "warning",
                (
                    "connectors",
                    cid,
                ),
            )
    if not nodes:
        diag("CT601", "no pipeline of a supported signal (traces, metrics, logs) to import")
        return result

    # Types to declare in ctrltower.yaml: unknown to the catalog, or used beyond what it lists.
    declare: list[dict[str, Any]] = []
    for (cls, type_), sigs in sorted(usage.items()):
        info = cat.lookup(cls, type_)
        if info is None or not sigs <= info.signals:
            have = set(info.signals) if info is not None else set()
            declare.append({"type": type_, "class": cls, "signals": signal_order(sigs | have)})
    conn_pairs: dict[str, set[tuple[str, str]]] = {}
    for cid in set(conn_in) | set(conn_out):
        pairs = {(i, o) for i in conn_in.get(cid, set()) for o in conn_out.get(cid, set())}
        conn_pairs.setdefault(_type_of(cid), set()).update(pairs)
    for type_, pairs in sorted(conn_pairs.items()):
        info = cat.lookup("connector", type_)
        if info is None or not pairs <= info.pairs:
            allp = pairs | (set(info.pairs) if info is not None else set())
            declare.append({"type": type_, "class": "connector", "pairs": [list(p) for p in sorted(allp)]})
    extensions: dict[str, Any] = {}
    enabled = service.get("extensions") or []
    for ext in [str(e) for e in enabled] if isinstance(enabled, list) else []:
        extensions[ext] = _escape(components["extensions"].get(ext))
        if cat.lookup("extension", _type_of(ext)) is None:
            declare.append({"type": _type_of(ext), "class": "extension"})
    for ext in sorted(components["extensions"]):
        if ext not in extensions:
            diag("CT606", f"extension '{ext}' is defined but not enabled; not imported", "warning")

    pipeline_path = f"pipelines/{name}.yaml"
    if any(p in existing for p in (pipeline_path, f"pipelines/{name}.yml")):
        diag("CT604", f"{pipeline_path} already exists; choose another --pipeline name")
        return result

    signals = signal_order(signals_used)
    edge_list: list[dict[str, Any]] = []
    for (a, b), sigs in edges.items():
        edge: dict[str, Any] = {"from": a, "to": b}
        if set(sigs) != set(signals):
            edge["signals"] = signal_order(sigs)
        edge_list.append(edge)
    pipeline_doc = {
        "kind": "Pipeline",
        "name": name,
        "description": f"imported from {source_name}",
        "groups": [group],
        "signals": signals,
        "nodes": nodes,
        "edges": edge_list,
    }
    result.files[pipeline_path] = _schema_comment("pipeline", 1) + dump_yaml(pipeline_doc)

    group_path = f"groups/{group}.yaml"
    old_group = existing.get(group_path)
    if old_group is None:
        group_doc: dict[str, Any] = {
            "kind": "AgentGroup",
            "name": group,
            "description": f"imported from {source_name}",
            "selector": {"group": group},
        }
        if extensions:
            group_doc["extensions"] = extensions
        result.files[group_path] = _schema_comment("agent-group", 1) + dump_yaml(group_doc)
    elif extensions:
        old = _existing_mapping(old_group, group_path, result)
        if old is None:
            return result
        merged = dict(old.get("extensions") or {})
        if any(merged.get(k, v) != v for k, v in extensions.items()):
            diag("CT604", f"{group_path} already has different configs for some of these extensions")
            return result
        if not all(k in merged for k in extensions):
            merged.update(extensions)
            old["extensions"] = merged
            result.files[group_path] = _schema_comment("agent-group", 1) + dump_yaml(old)

    if declare:
        settings_path = next((p for p in SETTINGS_FILES if p in existing), SETTINGS_FILES[0])
        raw = existing.get(settings_path)
        loaded_settings = _existing_mapping(raw, settings_path, result) if raw is not None else {}
        if loaded_settings is None:
            return result
        settings = loaded_settings or {"kind": "Settings"}
        declared = {(c.get("class"), c.get("type")) for c in settings.get("components") or []}
        new = [d for d in declare if (d["class"], d["type"]) not in declared]
        if new:
            settings["components"] = [*(settings.get("components") or []), *new]
            result.files[settings_path] = _schema_comment("settings", 0) + dump_yaml(settings)
    for filename, text in json_schemas().items():
        if f"{SCHEMA_DIR}/{filename}" not in existing:
            result.files[f"{SCHEMA_DIR}/{filename}"] = text
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
