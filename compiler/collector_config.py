"""Read a collector config for import: the file(s) loaded with positions, checked for the shape import needs.

`read_collector_config` returns the sections import works from (components by section, the service,
its pipelines) and `origin(path)`: the file and positions a value came from, so every import
diagnostic points at file:line:col in what the user wrote.
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
        """The file that wrote the value at path (the last one that did), or its nearest ancestor."""
        for i in range(len(path), -1, -1):
            prefix = path[:i]
            for src in reversed(self.sources):
                if prefix in src.positions.keys or prefix in src.positions.values:
                    return src
        return self.sources[-1]


def read_collector_config(
    sources: Sequence[tuple[str, bytes | str]], diags: list[Diagnostic]
) -> CollectorConfig | None:
    """The config with its sections checked (CT601 and load errors go to diags; None then)."""
    name, raw = sources[0]
    try:
        loaded, _ = load_yaml(raw)
    except LoadError as err:
        diags.append(err.diagnostic(name))
        return None
    doc = loaded.data if loaded is not None else None
    src = Source(name, loaded.positions) if loaded is not None else Source(name)
    if not isinstance(doc, dict) or not isinstance(doc.get("service"), dict):
        diags.append(
            diagnostic(
                src, (), "CT601", "not a collector config: expected a mapping with a 'service' section"
            )
        )
        return None
    cfg = CollectorConfig(doc=doc, sources=[src], service=doc["service"])
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
