"""The compiler's public entry points (pure: files in, configs and diagnostics out).

Owned by the compiler; reconciler and webui import only from here (`from compiler.api import ...`).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field

from schemas.api import GroupRevision, PipelineGraph
from schemas.diagnostics import Diagnostic, has_errors


@dataclass(frozen=True)
class CompileResult:
    diagnostics: list[Diagnostic]
    configs: dict[str, str] = field(default_factory=dict)  # group name -> rendered YAML
    groups: list[GroupRevision] = field(default_factory=list)
    pipelines: list[PipelineGraph] = field(default_factory=list)
    file_pipelines: dict[str, list[str]] = field(default_factory=dict)  # repo path -> pipeline names

    @property
    def ok(self) -> bool:
        return not has_errors(self.diagnostics)


def compile_repo(
    files: Mapping[str, bytes | str], *, only_groups: Collection[str] | None = None
) -> CompileResult:
    """Validate the repo given as {relative path: content} and render every group (or only_groups)."""
    raise NotImplementedError("the compiler issue (#2) implements this")
