"""Payloads of the server's HTTP APIs: the agent API (/api/agent/v1) and the control API (/api/v1).

Both sides (server, agent, reconciler, UI) build and parse these models; the OpenAPI document is
generated from them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import Field, StringConstraints

from schemas.common import CommitSha, FrozenModel, LabelKey, LabelValue, Name, Signal, StrictModel
from schemas.diagnostics import Diagnostic
from schemas.repo import RolloutPolicy

# Response headers of GET /api/agent/v1/agents/{id}/config (besides ETag: "<config hash>").
HEADER_REVISION = "X-Ctrltower-Revision"
HEADER_GROUP = "X-Ctrltower-Group"
HEADER_CONFIG_HASH = "X-Ctrltower-Config-Hash"

Role = Literal["viewer", "operator", "admin", "reconciler", "enroll"]
ROLES: tuple[Role, ...] = ("viewer", "operator", "admin", "reconciler", "enroll")
Action = Literal["start", "stop", "restart", "shutdown"]
CollectorState = Literal["starting", "running", "stopped", "crashed"]
SyncStatus = Literal["Synced", "OutOfSync", "ApplyFailed", "Untrusted", "Drifted", "NoGroup"]
# online: reporting and (when scraped) scrape healthy; degraded: reporting but scrapes failing, or an
# OpAMP agent reporting itself unhealthy;
# offline: silent for three poll intervals.
AgentStatus = Literal["online", "degraded", "offline"]


# --- errors -------------------------------------------------------------------------------------


class ErrorDetail(FrozenModel):
    code: str = Field(description="stable machine-readable code, e.g. not_found, no_group, revision_conflict")
    message: str
    details: Any | None = None


class ErrorBody(FrozenModel):
    """The one JSON shape of every 4xx/5xx answer."""

    error: ErrorDetail


# --- agent API ------------------------------------------------------------------------------------

# Bounds on what an agent may send (issue 10: one agent with 20,000 labels slowed every fleet page, a 4 MB
# revision string was stored). Hashes are 64 hex characters and revisions commit SHAs; 128 leaves room.
MAX_LABELS = 64
MAX_REPORT_ID = 128
ReportId = Annotated[str, StringConstraints(max_length=MAX_REPORT_ID)]


class AgentRegistration(StrictModel):
    instance_id: str = Field(min_length=8, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$")
    hostname: str = Field(min_length=1, max_length=253)
    platform: str = Field(default="", max_length=128)
    agent_version: str = Field(default="", max_length=64)
    collector_version: str | None = Field(default=None, max_length=128)
    labels: dict[LabelKey, LabelValue] = Field(default_factory=dict, max_length=MAX_LABELS)
    metrics_url: str | None = Field(default=None, max_length=2048, description="the agent's /metrics URL")
    agent_token: str | None = Field(
        default=None,
        max_length=512,
        description="this instance's current agent token: proves it is the same agent when its "
        "instance_id is already registered (else an operator must approve the re-registration)",
    )


class RegistrationResponse(FrozenModel):
    agent_id: str
    agent_token: str = Field(description="bearer token for this agent's own endpoints; shown once")
    poll_interval_s: float


class ApplyResult(StrictModel):
    # untrusted: refused before anything was written (signature missing, bad, expired, other group)
    result: Literal["applied", "failed", "untrusted"]
    config_hash: ReportId
    revision: ReportId | None = None
    error: str | None = Field(default=None, max_length=8192)
    at: datetime


class DriftEvent(StrictModel):
    at: datetime
    local_hash: ReportId | None = Field(description="hash of the file at the config path; null: deleted")
    desired_hash: ReportId


class CommandAck(StrictModel):
    id: int
    result: Literal["done", "failed"]
    error: str | None = Field(default=None, max_length=4096)


class StatusReport(StrictModel):
    collector_state: CollectorState
    collector_pid: int | None = None
    effective_config_hash: ReportId | None = None
    effective_revision: ReportId | None = None
    last_apply: ApplyResult | None = None
    drift_events: list[DriftEvent] = Field(default_factory=list, max_length=100)
    acks: list[CommandAck] = Field(default_factory=list, max_length=100)
    uptime_s: float = Field(ge=0, le=1e10)
    stopped_by_operator: bool = False
    verifies_signatures: bool | None = Field(
        default=None, description="true: runs only configs signed by a --trust-key; false: no key pinned"
    )
    collector_version: str | None = Field(
        default=None, max_length=128, description="the collector build running now (after upgrades)"
    )


class Command(FrozenModel):
    id: int
    action: Action
    issued_at: datetime


class StatusResponse(FrozenModel):
    commands: list[Command]
    poll_interval_s: float


# --- control API: revisions -------------------------------------------------------------------------


class GroupRevision(FrozenModel):
    name: Name
    selector: dict[str, str]
    priority: int
    config: str = Field(description="the rendered collector YAML, byte for byte what agents run")
    config_hash: str
    pipelines: list[str] = Field(default_factory=list)
    statement: str | None = Field(
        default=None,
        max_length=8192,
        description="the reconciler's signed statement for this group and commit (docs/architecture.md)",
    )
    collector_version: str | None = Field(
        default=None, max_length=128, description="the collector build the group asks for (group file)"
    )


class PipelineNodeView(FrozenModel):
    id: str
    class_: str = Field(alias="class")
    type: str
    config: dict[str, Any] | None = None


class PipelineEdgeView(FrozenModel):
    from_: str = Field(alias="from")
    to: str
    signals: list[Signal]


class PipelineGraph(FrozenModel):
    name: Name
    file: str = Field(description="source path in the config repo")
    groups: list[str]
    signals: list[Signal]
    nodes: list[PipelineNodeView]
    edges: list[PipelineEdgeView]


class RevisionPublish(StrictModel):
    commit_sha: CommitSha
    previous_commit_sha: CommitSha | None = Field(
        description="compare-and-set: must equal the server's current revision (null: none yet)"
    )
    message: str | None = Field(default=None, max_length=65536)
    author: str | None = Field(default=None, max_length=512)
    committed_at: datetime | None = None
    source: str | None = Field(default=None, max_length=2048, description="repo URL without credentials")
    groups: list[GroupRevision]
    pipelines: list[PipelineGraph]
    rollouts: list[RolloutPolicy] = Field(
        default_factory=list, description="the commit's rollout policies (rollouts/*.yaml), docs/rollouts.md"
    )


class PublishResult(FrozenModel):
    commit_sha: str
    # resigned: the same commit, its groups' statements replaced by fresher ones
    outcome: Literal["published", "unchanged", "resigned"]
    rollouts: list[int] = Field(default_factory=list, description="ids of the rollouts this publish started")


class RevisionSummary(FrozenModel):
    commit_sha: str
    published_at: datetime
    message: str | None = None
    author: str | None = None
    committed_at: datetime | None = None
    groups: dict[str, str] = Field(description="group name -> config hash")
    current: bool = False
    signed_until: datetime | None = Field(
        default=None, description="earliest expiry of its groups' statements; null: a group is unsigned"
    )


# --- control API: collector builds ----------------------------------------------------------------

# Response headers of GET /api/agent/v1/agents/{id}/collectors/{version} (the body is the binary).
HEADER_COLLECTOR_VERSION = "X-Ctrltower-Collector-Version"
HEADER_COLLECTOR_SHA256 = "X-Ctrltower-Collector-Sha256"


class CollectorBuild(FrozenModel):
    """A collector binary published with `ctrltower collector publish` (the bytes are not in the view)."""

    version: str
    sha256: str
    size: int
    signed: bool = Field(description="true: published with a signed statement agents with --trust-key need")
    statement: str | None = None
    published_at: datetime
    published_by: str


class CollectorBuildList(FrozenModel):
    items: list[CollectorBuild]


# --- control API: agents, commands, audit ------------------------------------------------------------


class OpampStatus(FrozenModel):
    """What an OpAMP agent told the server (docs/opamp.md): capabilities, health, remote config status."""

    capabilities: list[str] = Field(description="AgentCapabilities names, e.g. AcceptsRestartCommand")
    commands: list[Action] = Field(description="the operator commands this agent can carry out")
    healthy: bool | None = None
    health_status: str | None = None
    health_error: str | None = None
    remote_config_status: str | None = Field(default=None, description="APPLIED, APPLYING, FAILED, UNSET")
    remote_config_error: str | None = None
    own_token: bool = Field(description="false: it authenticates with the enroll token that registered it")


class AgentView(FrozenModel):
    id: str
    instance_id: str
    hostname: str
    platform: str
    agent_version: str
    collector_version: str | None
    labels: dict[str, str]
    metrics_url: str | None
    group: str | None
    desired_revision: str | None
    desired_hash: str | None
    reported_hash: str | None
    effective_revision: str | None
    sync_status: SyncStatus
    run_state: CollectorState | None
    status: AgentStatus
    last_seen: datetime | None
    registered_at: datetime
    last_apply: ApplyResult | None = None
    stopped_by_operator: bool = False
    protocol: Literal["http", "opamp"] = "http"
    opamp: OpampStatus | None = Field(default=None, description="set for OpAMP agents")
    verifies_signatures: bool | None = None


class Page(FrozenModel):
    total: int
    limit: int
    offset: int


class AgentList(FrozenModel):
    items: list[AgentView]
    page: Page
    counts: dict[str, int] = Field(default_factory=dict, description="agents per status over the filter")


class CommandRequest(StrictModel):
    action: Action


class CommandView(FrozenModel):
    id: int
    agent_id: str
    action: Action
    state: Literal["queued", "delivered", "done", "failed"]
    issued_by: str
    issued_at: datetime
    acked_at: datetime | None = None
    error: str | None = None


class AuditEntry(FrozenModel):
    id: int
    at: datetime
    actor: str
    role: str
    action: str
    target: str | None = None
    detail: dict[str, Any] | None = None


AgentEventKind = Literal[
    "registered",
    "applied",
    "apply_failed",
    "untrusted",
    "collector",
    "drift",
    "command",
    "command_ack",
    "state",
]


class AgentEvent(FrozenModel):
    """What happened to one agent: applies, failures, drift, commands, registration."""

    id: int
    agent_id: str
    at: datetime
    kind: AgentEventKind
    revision: str | None = None
    config_hash: str | None = None
    detail: dict[str, Any] | None = None


# --- control API: reconcile runs ---------------------------------------------------------------------

# rolled_back: the server refuses the commit because a rollout rolled it back (a later commit is needed)
RunOutcome = Literal["published", "unchanged", "invalid", "error", "conflict", "rolled_back"]


class ReconcileRunReport(StrictModel):
    started_at: datetime
    finished_at: datetime
    source: str = Field(max_length=2048, description="repo URL without credentials")
    ref: str = Field(max_length=512)
    commit_sha: CommitSha | None = None
    outcome: RunOutcome
    diagnostics: list[Diagnostic] = Field(default_factory=list)
    timings_s: dict[str, float] = Field(default_factory=dict)
    error: str | None = Field(default=None, max_length=65536)


class ReconcileRunView(FrozenModel):
    id: int
    started_at: datetime
    finished_at: datetime
    source: str
    ref: str
    commit_sha: str | None
    outcome: RunOutcome
    diagnostics: list[Diagnostic]
    timings_s: dict[str, float]
    error: str | None


# --- control API: tokens -----------------------------------------------------------------------------


# An enroll token's label scope: the label keys a registration with it may carry, each with the values
# it may take ("*": any value). None: any labels. Parsed from "tier=edge,tier=canary,zone=*".
LabelScope = dict[LabelKey, list[LabelValue]]
ANY_VALUE = "*"


class TokenCreate(StrictModel):
    role: Literal["viewer", "operator", "admin", "reconciler", "enroll"]
    name: str = Field(default="", max_length=128)
    labels: LabelScope | None = Field(
        default=None,
        max_length=MAX_LABELS,
        description="enroll tokens only: the labels a registration may claim (key -> allowed values, "
        '"*" for any); a registration claiming other labels is refused with 403 labels_out_of_scope',
    )


class TokenView(FrozenModel):
    id: int
    name: str
    role: str
    created_at: datetime
    revoked_at: datetime | None = None
    labels: LabelScope | None = None


def parse_label_scope(text: str) -> LabelScope:
    """'tier=edge,tier=canary,zone=*' -> {'tier': ['edge', 'canary'], 'zone': ['*']} (ValueError if bad)."""
    scope: dict[str, list[str]] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = part.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"label scope {part!r} is not KEY=VALUE (VALUE may be *)")
        values = scope.setdefault(key.strip(), [])
        if value.strip() not in values:
            values.append(value.strip())
    return scope


def labels_outside(labels: dict[str, str], scope: LabelScope | None) -> dict[str, str]:
    """The labels a scope does not allow (empty: all allowed; no scope allows everything)."""
    if scope is None:
        return {}
    return {
        k: v for k, v in labels.items() if k not in scope or (ANY_VALUE not in scope[k] and v not in scope[k])
    }


class TokenCreated(FrozenModel):
    token: TokenView
    secret: str = Field(description="shown once; stored only as a hash")


# --- control API: list and detail views (added by the server part) ----------------------------------


class RevisionDetail(FrozenModel):
    revision: RevisionSummary
    source: str | None = None
    published_by: str | None = None
    previous_commit_sha: str | None = None
    group_configs: list[GroupRevision]
    pipelines: list[str]


class RevisionList(FrozenModel):
    items: list[RevisionSummary]
    page: Page


class GroupView(FrozenModel):
    """A group as the current revision defines it."""

    name: str
    selector: dict[str, str]
    priority: int
    config_hash: str
    revision: str
    pipelines: list[str]
    agents: int = Field(default=0, description="agents resolved to this group")


class GroupHistoryEntry(FrozenModel):
    """One publication that changed the group's rendered config (or added/removed the group)."""

    commit_sha: str
    published_at: datetime
    config_hash: str | None = Field(description="null: the group did not exist in that revision")
    message: str | None = None


class GroupDetail(FrozenModel):
    group: GroupView
    config: str
    history: list[GroupHistoryEntry]
    diff: str | None = Field(default=None, description="unified diff for ?diff=SHA1..SHA2")


class GroupList(FrozenModel):
    items: list[GroupView]
    revision: str | None


class PipelineList(FrozenModel):
    items: list[PipelineGraph]
    revision: str | None


class ReconcileRunList(FrozenModel):
    items: list[ReconcileRunView]
    page: Page


class AuditList(FrozenModel):
    items: list[AuditEntry]
    page: Page


class AgentEventList(FrozenModel):
    items: list[AgentEvent]
    page: Page


class CommandList(FrozenModel):
    items: list[CommandView]


class TokenList(FrozenModel):
    items: list[TokenView]


# --- control API: rollouts (docs/rollouts.md) ------------------------------------------------------

RolloutState = Literal["progressing", "paused", "succeeded", "rolled_back", "aborted", "superseded"]
ROLLOUT_ACTIVE: tuple[RolloutState, ...] = ("progressing", "paused")
Verdict = Literal["pass", "fail", "inconclusive"]


class CheckResult(FrozenModel):
    """One check of one measurement: the value, the threshold it was held to, the verdict."""

    metric: str
    signal: Signal | None = None
    value: float | None = Field(description="null: not enough data (the check is inconclusive)")
    threshold: float
    comparison: Literal["max", "min_ratio"] = Field(description="max: value <= threshold; min_ratio: >=")
    verdict: Verdict
    detail: str = Field(default="", description="what the value was computed from, in words")
    baseline: float | None = Field(default=None, description="throughput: old revision's per-agent rate")


class Measurement(FrozenModel):
    id: int
    step: int = Field(description="0-based index of the analysis step it belongs to")
    at: datetime
    verdict: Verdict
    checks: list[CheckResult]


class RolloutStepView(FrozenModel):
    index: int
    action: Literal["group", "weight", "analysis", "pause"]
    description: str
    status: Literal["done", "current", "pending"]


class RolloutAgents(FrozenModel):
    new: int = Field(description="agents of the group served the new revision")
    old: int = Field(description="agents of the group still served the previous one")


class RolloutView(FrozenModel):
    id: int
    policy: str
    commit_sha: str
    bases: dict[str, str] = Field(description="group -> the revision it ran before (rollback target)")
    state: RolloutState
    step: int = Field(description="0-based index of the current step; len(steps) when every step is done")
    steps: list[RolloutStepView]
    weight: int = Field(description="percent of each group on the new revision (100: all)")
    whole_groups: list[str] = Field(description="groups a group step moved entirely")
    reason: str | None = None
    on_failure: str
    created_at: datetime
    updated_at: datetime
    step_started_at: datetime
    finished_at: datetime | None = None
    agents: dict[str, RolloutAgents] = Field(default_factory=dict, description="per group")
    measurements: list[Measurement] = Field(default_factory=list, description="newest first (detail: all)")


class RolloutList(FrozenModel):
    items: list[RolloutView]
    page: Page


class RolloutAction(StrictModel):
    reason: str | None = Field(default=None, max_length=1024, description="kept in the audit log")


__all__ = [
    "HEADER_CONFIG_HASH",
    "HEADER_GROUP",
    "HEADER_REVISION",
    "LabelKey",
    "LabelValue",
]
