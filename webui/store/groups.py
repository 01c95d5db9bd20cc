"""Group resolution (pure): which group an agent's labels select."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class GroupSelector:
    name: str
    selector: Mapping[str, str]
    priority: int


def matches(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    """Every selector label must be present with the same value; an empty selector matches all."""
    return all(labels.get(key) == value for key, value in selector.items())


def resolve_group(labels: Mapping[str, str], groups: Iterable[GroupSelector]) -> str | None:
    """The highest-priority matching group; ties broken by name (alphabetically first wins)."""
    best: GroupSelector | None = None
    for group in groups:
        if not matches(group.selector, labels):
            continue
        if best is None or (-group.priority, group.name) < (-best.priority, best.name):
            best = group
    return None if best is None else best.name
