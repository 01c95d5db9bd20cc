"""Diagnostics as text (with a caret snippet), JSON, GitHub annotations or Markdown: one list, four views."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping

from schemas.diagnostics import Diagnostic, printable

FORMATS = ("text", "json", "github", "markdown")
_PLAIN_PATH = re.compile(r"[\w./ -]+:\d+:\d+")  # shown as code; anything else is escaped text


def _line_of(files: Mapping[str, bytes | str], path: str, line: int) -> str | None:
    raw = files.get(path)
    if raw is None or line <= 0:
        return None
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    lines = text.splitlines()
    if line > len(lines):
        return None
    out = lines[line - 1]
    return out if len(out) <= 200 else out[:200] + "..."


def summary(diags: list[Diagnostic]) -> str:
    errors = sum(d.severity == "error" for d in diags)
    warnings = len(diags) - errors
    return f"{errors} error{'s' * (errors != 1)}, {warnings} warning{'s' * (warnings != 1)}"


def format_text(diags: list[Diagnostic], files: Mapping[str, bytes | str] | None = None) -> str:
    """`PATH:LINE:COL: error CODE: message`, then the source line with a caret and the hint."""
    out: list[str] = []
    for d in diags:
        head = d.format_text()
        if d.group:
            head += f" [group {d.group}]"
        out.append(head)
        src = _line_of(files or {}, d.location.file, d.location.line)
        if src is not None:
            out.append(f"    {printable(src)}")
            if d.location.column > 0:
                out.append("    " + " " * (d.location.column - 1) + "^")
        if d.hint:
            out.append(f"    hint: {printable(d.hint)}")
    out.append(summary(diags))
    return "\n".join(out) + "\n"


def format_json(diags: list[Diagnostic]) -> str:
    errors = sum(d.severity == "error" for d in diags)
    body = {
        "diagnostics": [d.model_dump(mode="json") for d in diags],
        "errors": errors,
        "warnings": len(diags) - errors,
    }
    return json.dumps(body, indent=2, sort_keys=True) + "\n"


def _gh_escape(text: str, prop: bool = False) -> str:
    text = text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
    if prop:
        text = text.replace(":", "%3A").replace(",", "%2C")
    return text


def format_github(diags: list[Diagnostic], path_prefix: str = "") -> str:
    """GitHub Actions workflow commands: each diagnostic becomes an annotation on the PR diff."""
    out = []
    for d in diags:
        loc = d.location
        props = [f"file={_gh_escape(path_prefix + loc.file, True)}"]
        if loc.line:
            props.append(f"line={loc.line}")
        if loc.column:
            props.append(f"col={loc.column}")
        props.append(f"title={_gh_escape(d.code, True)}")
        message = d.message + (f" (hint: {d.hint})" if d.hint else "")
        out.append(f"::{d.severity} {','.join(props)}::{_gh_escape(message)}")
    return "\n".join(out) + ("\n" if out else "")


def markdown_text(text: str) -> str:
    """Text from a repo as plain text in Markdown (a PR comment): one line, no table breaks, HTML,
    code spans, emphasis, links or images, and no @mentions that would notify people."""
    text = printable(text)
    for ch in "\\`*_|[]!~#":
        text = text.replace(ch, "\\" + ch)
    return text.replace("<", "&lt;").replace(">", "&gt;").replace("@", "&#64;")


def format_markdown(diags: list[Diagnostic]) -> str:
    if not diags:
        return "No problems found.\n"
    rows = ["| severity | code | location | message |", "| --- | --- | --- | --- |"]
    for d in diags:
        loc = d.location
        message = markdown_text(d.message + (f" (hint: {d.hint})" if d.hint else ""))
        where = f"{loc.file}:{loc.line}:{loc.column}"
        where = f"`{where}`" if _PLAIN_PATH.fullmatch(where) else markdown_text(where)
        rows.append(f"| {d.severity} | {d.code} | {where} | {message} |")
    return "\n".join(rows) + f"\n\n{summary(diags)}\n"


def format_diagnostics(
    diags: list[Diagnostic], fmt: str, files: Mapping[str, bytes | str] | None = None
) -> str:
    if fmt == "json":
        return format_json(diags)
    if fmt == "github":
        return format_github(diags)
    if fmt == "markdown":
        return format_markdown(diags)
    return format_text(diags, files)
