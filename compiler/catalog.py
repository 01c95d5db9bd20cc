"""The component catalog: which collector component types exist, per class, and what signals they carry.

Built from compiler/data/otel-components.json (collector v0.159.0 metadata) plus the custom types a repo
declares in ctrltower.yaml. Both a type's current name and its deprecated name are accepted (the test
binary uses the old names: filelog, otlphttp, memory_limiter); a type is unique only within its class.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any

from schemas.common import PIPELINE_SIGNALS, Signal
from schemas.repo import ComponentType

CLASSES = ("receiver", "processor", "exporter", "connector", "extension")
# The collector's stability levels, least stable first (component metadata.yaml).
STABILITY_ORDER = {"unmaintained": 0, "deprecated": 1, "development": 2, "alpha": 3, "beta": 4, "stable": 5}


@dataclass(frozen=True)
class ComponentInfo:
    type: str  # the catalog's current name
    class_: str
    signals: frozenset[str]
    pairs: frozenset[tuple[str, str]]  # connectors only
    custom: bool = False
    # upstream stability per signal ("profiles": "alpha") or, for connectors, per pair ("traces_to_metrics")
    stability: tuple[tuple[str, str], ...] = ()

    def stability_of(self, signal: str) -> str | None:
        """How stable this component's support for `signal` is upstream; None when unknown (custom
        types). For a connector: its least stable pair into or out of the signal."""
        levels = dict(self.stability)
        if self.class_ != "connector":
            return levels.get(signal)
        keys = [f"{a}_to_{b}" for a, b in sorted(self.pairs) if signal in (a, b)]
        found = [levels[k] for k in keys if k in levels]
        if not found or len(found) < len(keys):
            return None
        return min(found, key=lambda level: STABILITY_ORDER.get(level, -1))

    def emits(self) -> frozenset[str]:
        """Signals this component can send downstream."""
        if self.class_ == "connector":
            return frozenset(o for _, o in self.pairs)
        return self.signals

    def accepts(self) -> frozenset[str]:
        """Signals this component can take from upstream."""
        if self.class_ == "connector":
            return frozenset(i for i, _ in self.pairs)
        return self.signals


@dataclass(frozen=True)
class Catalog:
    by_class: dict[str, dict[str, ComponentInfo]]  # class -> name (current and deprecated) -> info

    def lookup(self, class_: str, type_: str) -> ComponentInfo | None:
        return self.by_class.get(class_, {}).get(type_)

    def classes_of(self, type_: str) -> list[str]:
        return [c for c in CLASSES if type_ in self.by_class.get(c, {})]

    def suggest(self, class_: str, type_: str) -> list[str]:
        return difflib.get_close_matches(type_, list(self.by_class.get(class_, {})), n=3, cutoff=0.6)

    def with_custom(self, custom: Iterable[ComponentType]) -> Catalog:
        extra = list(custom)
        if not extra:
            return self
        by_class = {c: dict(v) for c, v in self.by_class.items()}
        for ct in extra:
            info = ComponentInfo(
                type=ct.type,
                class_=ct.class_,
                signals=frozenset(ct.signals),
                pairs=frozenset((a, b) for a, b in ct.pairs),
                custom=True,
            )
            by_class.setdefault(ct.class_, {})[ct.type] = info
        return Catalog(by_class=by_class)


def _info(entry: dict[str, Any]) -> ComponentInfo:
    known = set(PIPELINE_SIGNALS)
    stability = entry.get("stability") or {}
    return ComponentInfo(
        type=entry["type"],
        class_=entry["class"],
        signals=frozenset(s for s in entry.get("signals") or [] if s in known),
        pairs=frozenset((a, b) for a, b in entry.get("pairs") or [] if a in known and b in known),
        stability=tuple(sorted((str(k), str(v)) for k, v in stability.items())),
    )


@lru_cache(maxsize=1)
def builtin_catalog() -> Catalog:
    """The catalog shipped with the compiler (read once; it is immutable data, not state)."""
    raw = resources.files("compiler").joinpath("data/otel-components.json").read_text("utf-8")
    by_class: dict[str, dict[str, ComponentInfo]] = {c: {} for c in CLASSES}
    for entry in json.loads(raw)["components"]:
        info = _info(entry)
        names = [entry["type"]]
        if entry.get("deprecated_type"):
            names.append(entry["deprecated_type"])
        for name in names:
            by_class.setdefault(info.class_, {})[name] = info
    return Catalog(by_class=by_class)


def signal_order(signals: Iterable[str]) -> list[Signal]:
    """Signals in the canonical order traces, metrics, logs, profiles."""
    present = set(signals)
    return [s for s in PIPELINE_SIGNALS if s in present]
