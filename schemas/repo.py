"""Models of the files in a config repository: a public contract (fields may be added, never renamed).

ctrltower.yaml      RepoSettings (optional)
groups/*.yaml       AgentGroup
pipelines/*.yaml    Pipeline
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from schemas.common import ComponentClass, LabelKey, LabelValue, Name, NodeId, Signal, StrictModel


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
