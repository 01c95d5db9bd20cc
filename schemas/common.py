"""Small shared types: signals, component classes, names, the strict base model, config hashing, durations."""

from __future__ import annotations

import hashlib
import re
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, StringConstraints

Signal = Literal["traces", "metrics", "logs", "profiles"]
# Every signal a repo pipeline can carry, in canonical order. `profiles` is development/alpha upstream:
# a repo opts in to it in ctrltower.yaml (RepoSettings.unstable_signals).
PIPELINE_SIGNALS: tuple[Signal, ...] = ("traces", "metrics", "logs", "profiles")
# The signals whose items the agent counts from the collector's own metrics (none exist for profiles).
SIGNALS: tuple[Signal, ...] = ("traces", "metrics", "logs")

ComponentClass = Literal["receiver", "processor", "exporter", "connector"]
COMPONENT_CLASSES: tuple[ComponentClass, ...] = ("receiver", "processor", "exporter", "connector")

# Group and pipeline names: DNS-label-like, so they are safe in files, URLs and collector IDs.
Name = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9-]*$", max_length=63)]
NodeId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=63)]
CommitSha = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{7,64}$")]
LabelKey = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_./-]*$", max_length=63)]
LabelValue = Annotated[str, StringConstraints(max_length=253)]


class StrictModel(BaseModel):
    """Unknown fields are errors everywhere: a typo must never be silently ignored."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class FrozenModel(StrictModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)


def config_hash(text: str | bytes) -> str:
    """The identity of a rendered config: sha256 of its exact bytes, lowercase hex.

    The server's ETag, the agent's reported hash and the plan all use this, so "what was
    reviewed is what runs" can be checked byte for byte.
    """
    data = text.encode("utf-8") if isinstance(text, str) else text
    return hashlib.sha256(data).hexdigest()


# Durations, one vocabulary for every part: CLI options, repo files (rollouts), metric queries.
DURATION_UNITS: dict[str, float] = {
    "ms": 0.001,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
    "d": 86400.0,
    "w": 604800.0,
}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$")


def parse_duration(text: str) -> float | None:
    """'250ms', '30s', '1.5m', '2h', '7d', '1w' or plain seconds -> seconds; None when it does not parse.

    Callers decide what range they accept (positive, at most a week, ...).
    """
    m = _DURATION.match(text) if isinstance(text, str) else None
    return None if m is None else float(m.group(1)) * DURATION_UNITS[m.group(2) or "s"]
