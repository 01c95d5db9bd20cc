"""The one diagnostic type: every problem found in a config repo is reported as one of these."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from schemas.common import FrozenModel

Severity = Literal["error", "warning"]


class Location(FrozenModel):
    file: str = Field(description="path relative to the repo root")
    line: int = Field(default=0, ge=0, description="1-based; 0 when the whole file is meant")
    column: int = Field(default=0, ge=0, description="1-based; 0 when unknown")
    pipeline: str | None = None
    node: str | None = Field(default=None, description="node id, or 'from->to' for an edge")
    key_path: str | None = Field(default=None, description="dotted path inside the document")


class Diagnostic(FrozenModel):
    code: str = Field(pattern=r"^CT\d{3}$", description="stable, documented in docs/diagnostics.md")
    severity: Severity = "error"
    message: str
    hint: str | None = None
    location: Location
    group: str | None = Field(default=None, description="set for problems found while rendering a group")

    def sort_key(self) -> tuple[str, int, int, str, str]:
        loc = self.location
        return (loc.file, loc.line, loc.column, self.code, self.message)

    def format_text(self) -> str:
        """`PATH:LINE:COL: error CODE: message`: the format editors and CI logs understand."""
        loc = self.location
        return f"{loc.file}:{loc.line}:{loc.column}: {self.severity} {self.code}: {self.message}"


def sort_diagnostics(diags: list[Diagnostic]) -> list[Diagnostic]:
    return sorted(diags, key=Diagnostic.sort_key)


def has_errors(diags: list[Diagnostic]) -> bool:
    return any(d.severity == "error" for d in diags)
