"""Models of the files in a config repository: a public contract (fields may be added, never renamed).

ctrltower.yaml      RepoSettings (optional)
groups/*.yaml       AgentGroup
pipelines/*.yaml    Pipeline
rollouts/*.yaml     RolloutPolicy (progressive rollouts gated on live metrics, docs/rollouts.md)
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from schemas.common import ComponentClass, LabelKey, LabelValue, Name, NodeId, Signal, StrictModel
from schemas.common import parse_duration as common_parse_duration

# A published collector build's version label (`ctrltower collector publish --version`).
COLLECTOR_VERSION_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._+-]*$"
# The rendered config's line naming the group's build: in the bytes, so the version is reviewed, signed,
# and delivered like any config change; the agent reads it back (agent/upgrade.py).
COLLECTOR_LINE_PREFIX = "# ctrltower: collector "


class CollectorSpec(StrictModel):
    """The collector build a group's agents run (published to the server by an admin)."""

    version: str = Field(
        min_length=1,
        max_length=128,
        pattern=COLLECTOR_VERSION_PATTERN,
        description="a version published with `ctrltower collector publish`, e.g. 0.135.0-acme.1",
    )


class AgentGroup(StrictModel):
    """Selects agents by labels and carries the variables its pipelines' templates see."""

    kind: Literal["AgentGroup"]
    name: Name
    description: str | None = None
    selector: dict[LabelKey, LabelValue] = Field(
        default_factory=dict, description="agent labels that must all match; {} matches every agent"
    )
    priority: int = Field(default=0, description="highest wins when several groups match; ties by name")
    vars: dict[str, Any] = Field(default_factory=dict, description="template variables: {{ vars.x }}")
    extensions: dict[str, dict[str, Any] | None] = Field(
        default_factory=dict,
        description="collector extensions for this group's config, keyed by component id (e.g. health_check)",
    )
    collector: CollectorSpec | None = Field(
        default=None, description="the collector build to run; absent: whatever binary each agent has"
    )


class Node(StrictModel):
    id: NodeId
    class_: ComponentClass = Field(alias="class")
    type: str = Field(min_length=1, max_length=128, description="collector component type, e.g. filelog")
    name: str | None = Field(
        default=None, description="the collector's instance name after '/', kept on import; default: the id"
    )
    config: dict[str, Any] | None = None


class Edge(StrictModel):
    from_: NodeId = Field(alias="from")
    to: NodeId
    signals: list[Signal] | None = Field(default=None, description="default: the pipeline's signals")


class Pipeline(StrictModel):
    kind: Literal["Pipeline"]
    name: Name
    description: str | None = None
    groups: list[Name] = Field(min_length=1)
    signals: list[Signal] = Field(min_length=1)
    nodes: list[Node] = Field(min_length=1)
    edges: list[Edge] = Field(default_factory=list)


class ComponentType(StrictModel):
    """A component the catalog lacks (vendor or custom builds), declared in ctrltower.yaml."""

    type: str = Field(min_length=1, max_length=128)
    class_: ComponentClass | Literal["extension"] = Field(alias="class")
    signals: list[Signal] = Field(default_factory=list)
    pairs: list[tuple[Signal, Signal]] = Field(
        default_factory=list, description="connectors only: [from, to] signal pairs"
    )


class TelemetrySettings(StrictModel):
    metrics_host: str = Field(default="127.0.0.1", description="the collector's own metrics stay on loopback")
    metrics_port: int = Field(default=8888, ge=1, le=65535)


class RepoSettings(StrictModel):
    kind: Literal["Settings"] = "Settings"
    components: list[ComponentType] = Field(default_factory=list)
    telemetry: TelemetrySettings = Field(default_factory=TelemetrySettings)
    unstable_signals: list[Signal] = Field(
        default_factory=list,
        description="signals allowed on components whose support for them is not stable upstream "
        "(profiles is development/alpha; the collector also needs --feature-gates=+service.profilesSupport)",
    )


# --- rollouts ---------------------------------------------------------------------------------------

# Repo files always name the unit, and no unit past hours (the JSON Schema pattern says the same).
DURATION_PATTERN = r"^[0-9]+(\.[0-9]+)?(ms|s|m|h)$"
_DURATION = re.compile(DURATION_PATTERN)
MAX_DURATION_S = 7 * 86400.0  # a week: anything longer is a typo, not a rollout

# The checks an analysis can run: name -> (kind, what it measures). "ratio" and "count" checks take
# `max`; "baseline" checks compare the new revision's agents with the old one's (`vs_baseline`).
CHECK_METRICS: dict[str, tuple[Literal["ratio", "count", "baseline"], str]] = {
    "send_failure_ratio": ("ratio", "items the exporters failed to send / items they tried to send"),
    "refused_ratio": ("ratio", "items the receivers refused / items they received (accepted + refused)"),
    "collector_restarts": ("count", "collector crashes and restarts of the new revision's agents"),
    "apply_failed_agents": ("count", "agents whose collector rejected the new revision (ApplyFailed)"),
    "throughput": ("baseline", "items sent per agent on the new revision / per agent on the old one"),
}


def parse_duration(text: str) -> float | None:
    """'30s', '1.5m', '500ms', '2h' -> seconds; None when it does not parse or is not positive."""
    if not isinstance(text, str) or _DURATION.match(text.strip()) is None:
        return None
    seconds = common_parse_duration(text)
    return seconds if seconds is not None and 0 < seconds <= MAX_DURATION_S else None


Duration = Annotated[
    str, Field(json_schema_extra={"pattern": DURATION_PATTERN}, description="e.g. 500ms, 30s, 5m, 1h")
]


class StepDuration(StrictModel):
    duration: Duration


class PauseStep(StrictModel):
    duration: Duration | None = Field(default=None, description="omitted: wait for `rollout promote`")


class RolloutStep(StrictModel):
    """Exactly one of: group (a whole group), weight (N % of every group's agents), analysis, pause."""

    group: Name | None = Field(default=None, description="every agent of this group gets the new revision")
    weight: int | None = Field(
        default=None, ge=1, le=100, description="N % of each group's agents (stable hash of agent and commit)"
    )
    analysis: StepDuration | None = Field(default=None, description="judge the metrics for this long")
    pause: PauseStep | None = None

    @model_validator(mode="after")
    def _one_action(self) -> RolloutStep:
        given = [k for k in ("group", "weight", "analysis", "pause") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(
                "a step has exactly one of group, weight, analysis, pause"
                + (f" (found {', '.join(given)})" if given else "")
            )
        return self

    def describe(self) -> str:
        """One line for plans, the CLI and the UI: 'group edge-canary', '50 % of each group', ..."""
        if self.group is not None:
            return f"group {self.group}"
        if self.weight is not None:
            return f"{self.weight} % of each group"
        if self.analysis is not None:
            return f"analysis {self.analysis.duration}"
        assert self.pause is not None
        return f"pause {self.pause.duration}" if self.pause.duration else "pause until promoted"

    @property
    def action(self) -> str:
        return next(k for k in ("group", "weight", "analysis", "pause") if getattr(self, k) is not None)


class BaselineCheck(StrictModel):
    min_ratio: float = Field(
        gt=0, le=10, description="new per-agent rate / old per-agent rate must reach this"
    )


class RolloutCheck(StrictModel):
    metric: str = Field(
        min_length=1,
        max_length=64,
        description=f"one of: {', '.join(CHECK_METRICS)} (docs/rollouts.md)",
    )
    max: float | None = Field(
        default=None, ge=0, description="ratio and count checks: the highest value allowed"
    )
    vs_baseline: BaselineCheck | None = Field(
        default=None, description="throughput: compare with the old revision"
    )
    signal: Signal | None = Field(default=None, description="throughput: only this signal (default: all)")


class RolloutAnalysis(StrictModel):
    interval: Duration = "30s"
    min_agents: int = Field(default=1, ge=1, description="fewer new-revision agents with data: inconclusive")
    failure_limit: int = Field(default=0, ge=0, description="failed measurements tolerated before failing")
    on_inconclusive: Literal["pause", "fail"] = "pause"
    checks: list[RolloutCheck] = Field(min_length=1)


class RolloutPolicy(StrictModel):
    """How a new revision reaches the groups it covers: steps, each judged on live metrics."""

    kind: Literal["RolloutPolicy"]
    name: Name
    description: str | None = None
    groups: list[Name] = Field(min_length=1, description="the groups this policy rolls out")
    steps: list[RolloutStep] = Field(min_length=1, max_length=100)
    analysis: RolloutAnalysis
    on_failure: Literal["rollback", "pause"] = "rollback"
