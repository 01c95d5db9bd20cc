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
        """`PATH:LINE:COL: error CODE: message`: the format editors and CI logs understand. One line,
        always: paths and messages quote what a pull request wrote (file names, keys, values), and
        a newline there could start a line CI reads as a command (`::add-mask::`, a fake `::error`)."""
        loc = self.location
        return printable(f"{loc.file}:{loc.line}:{loc.column}: {self.severity} {self.code}: {self.message}")


def sort_diagnostics(diags: list[Diagnostic]) -> list[Diagnostic]:
    return sorted(diags, key=Diagnostic.sort_key)


def has_errors(diags: list[Diagnostic]) -> bool:
    return any(d.severity == "error" for d in diags)


# Control characters (C0, DEL, C1), line and paragraph separators, and bidirectional overrides
# (which make a terminal or a web page show text in an order other than its bytes) as escapes.
_UNPRINTABLE = {c: f"\\x{c:02x}" for c in (*range(0x20), 0x7F, *range(0x80, 0xA0))}
_UNPRINTABLE.update({0x09: "\\t", 0x0A: "\\n", 0x0D: "\\r"})
_UNPRINTABLE.update(
    {c: f"\\u{c:04x}" for c in (0x2028, 0x2029, *range(0x202A, 0x202F), *range(0x2066, 0x206A))}
)


def printable(text: str) -> str:
    """Text from a repo (names, keys, values, paths) made safe to print on one line of a terminal,
    a CI log or a web page: control, separator and bidi characters become visible escapes."""
    return text.translate(_UNPRINTABLE)
