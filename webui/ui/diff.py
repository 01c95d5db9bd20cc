"""Line diffs of rendered configs for the agent and group pages (pure)."""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Literal

LineKind = Literal["add", "del", "ctx", "hunk", "file"]


@dataclass(frozen=True)
class DiffLine:
    kind: LineKind
    text: str


def unified(old: str, new: str, old_name: str, new_name: str, context: int = 3) -> list[DiffLine]:
    """A unified diff as typed lines (the template colours them). Empty when the texts are equal."""
    lines: list[DiffLine] = []
    for raw in difflib.unified_diff(
        old.splitlines(), new.splitlines(), fromfile=old_name, tofile=new_name, lineterm="", n=context
    ):
        if raw.startswith(("---", "+++")):
            lines.append(DiffLine("file", raw))
        elif raw.startswith("@@"):
            lines.append(DiffLine("hunk", raw))
        elif raw.startswith("+"):
            lines.append(DiffLine("add", raw))
        elif raw.startswith("-"):
            lines.append(DiffLine("del", raw))
        else:
            lines.append(DiffLine("ctx", raw))
    return lines


def from_text(text: str) -> list[DiffLine]:
    """Type the lines of an already computed unified diff (e.g. the store's group diff)."""
    lines: list[DiffLine] = []
    for raw in text.splitlines():
        kind: LineKind
        if raw.startswith(("---", "+++")):
            kind = "file"
        elif raw.startswith("@@"):
            kind = "hunk"
        elif raw.startswith("+"):
            kind = "add"
        elif raw.startswith("-"):
            kind = "del"
        else:
            kind = "ctx"
        lines.append(DiffLine(kind, raw))
    return lines
