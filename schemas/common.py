"""Small shared types: signals, component classes, names, the strict base model, config hashing."""

from __future__ import annotations

import hashlib
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
