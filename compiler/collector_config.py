"""Read a collector config for import: the file(s) loaded with positions, checked for the shape import needs.

A collector is often run with several files (`otelcol --config base.yaml --config overlay.yaml`); they
are merged the way the collector merges them: later files win, mappings merge key by key at every
depth, anything else (lists, scalars, null) replaces what was there. `read_collector_config` returns
the sections import works from (components by section, the service, its pipelines) and
`origin(path)`: the file (and positions) the value at a path came from, so every import diagnostic
points at file:line:col in the file that wrote it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from compiler.loader import LoadError, Path, Source, diagnostic, load_yaml
from schemas.diagnostics import Diagnostic

SECTION_CLASS = {
    "receivers": "receiver",
    "processors": "processor",
    "exporters": "exporter",
    "connectors": "connector",
}
SECTIONS = (*SECTION_CLASS, "extensions")


@dataclass
class CollectorConfig:
    """A collector config as import reads it."""

    doc: dict[str, Any]
    sources: list[Source]  # the files it came from, in order
    components: dict[str, dict[str, Any]] = field(default_factory=dict)  # section -> id -> config
    service: dict[str, Any] = field(default_factory=dict)
    pipelines: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        """The file names, as the imported files' description says."""
        return ", ".join(s.file for s in self.sources)

    def origin(self, path: Path) -> Source:
        """The file that wrote the value at path: walking down from the root, the last file defining
        each level; a level that is not a mapping was replaced whole, so its file owns everything below."""
        owner = self.sources[-1]
        candidates = list(self.sources)
        value: Any = self.doc
        for i in range(len(path) + 1):
            prefix = path[:i]
            if i:
                value = value.get(path[i - 1]) if isinstance(value, dict) else None
            defining = [s for s in candidates if prefix in s.positions.values]
            if not defining:
                break
            owner = defining[-1]
            candidates = defining if isinstance(value, dict) else [owner]
        return owner


def merge(base: Any, overlay: Any) -> Any:
    """The collector's merge of two config files: mappings merge at every depth, overlay wins."""
    if isinstance(base, dict) and isinstance(overlay, dict):
        out = dict(base)
        for key, value in overlay.items():
            out[key] = merge(base[key], value) if key in base else value
        return out
    return overlay


def read_collector_config(
    sources: Sequence[tuple[str, bytes | str]], diags: list[Diagnostic]
) -> CollectorConfig | None:
    """The files merged in order, with their sections checked (load errors and CT601 go to diags,
    every file's problems at once; None then). An empty file adds nothing, as for the collector."""
    loaded_sources: list[Source] = []
    doc: Any = {}
    ok = True
    for name, raw in sources:
        try:
            loaded, _ = load_yaml(raw)
        except LoadError as err:
            diags.append(err.diagnostic(name))
            ok = False
            continue
        if loaded is None:
            loaded_sources.append(Source(name))
            continue
        src = Source(name, loaded.positions)
        loaded_sources.append(src)
        if not isinstance(loaded.data, dict):
            diags.append(
                diagnostic(src, (), "CT601", "not a collector config: the top level must be a mapping")
            )
            ok = False
            continue
        doc = merge(doc, loaded.data)
    if not ok:
        return None
    last = next((s for s in reversed(loaded_sources) if s.positions.values), loaded_sources[-1])
    if not isinstance(doc.get("service"), dict):
        diags.append(
            diagnostic(
                last, (), "CT601", "not a collector config: expected a mapping with a 'service' section"
            )
        )
        return None
    cfg = CollectorConfig(doc=doc, sources=loaded_sources, service=doc["service"])
    for section in SECTIONS:
        value = doc.get(section)
        if value is None:
            cfg.components[section] = {}
        elif isinstance(value, dict):
            cfg.components[section] = value
        else:
            diags.append(
                diagnostic(
                    cfg.origin((section,)), (section,), "CT601", f"'{section}' must be a mapping", at_key=True
                )
            )
            return None
    pipelines = cfg.service.get("pipelines")
    if not isinstance(pipelines, dict) or not pipelines:
        diags.append(
            diagnostic(
                cfg.origin(("service",)),
                ("service",),
                "CT601",
                "service.pipelines is missing or empty",
                at_key=True,
            )
        )
        return None
    cfg.pipelines = pipelines
    return cfg
