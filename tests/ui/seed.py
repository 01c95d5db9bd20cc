"""Fill a real Store with realistic state for UI tests and bench/ui.py: revisions compiled by the real
compiler from example-config-repo/, agents registered and reporting through the store's own methods
(the same code paths the agent API uses), reconcile runs with diagnostics, and tokens."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from compiler.api import compile_repo
from schemas.api import (
    AgentRegistration,
    ApplyResult,
    GroupRevision,
    ReconcileRunReport,
    RevisionPublish,
    StatusReport,
)
from schemas.common import config_hash
from schemas.diagnostics import Diagnostic, Location
from webui.store import Store

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "example-config-repo"
SHA1 = "1" * 40
SHA2 = "2" * 40
TIERS = (
    {"tier": "edge"},
    {"tier": "edge", "ring": "canary"},
    {"tier": "gateway"},
    {"tier": "k8s"},
    {"tier": "none"},
)


def example_files() -> dict[str, bytes]:
    return {str(p.relative_to(EXAMPLE)): p.read_bytes() for p in EXAMPLE.rglob("*") if p.is_file()}


def publish_example(store: Store, sha: str, previous: str | None, *, tweak: str = "") -> RevisionPublish:
    """Compile the example repo and publish it as commit `sha` (see example_revision)."""
    rev = example_revision(sha, previous, tweak=tweak)
    store.publish(rev, actor="seed", role="reconciler")
    return rev


def example_revision(sha: str, previous: str | None, *, tweak: str = "") -> RevisionPublish:
    """The example repo compiled by the real compiler, as commit `sha`. `tweak` appends a comment line
    to the edge group's config so two revisions differ (a visible diff and a new hash)."""
    result = compile_repo(example_files())
    assert result.ok, [d.format_text() for d in result.diagnostics]
    groups = []
    for group in result.groups:
        text = group.config + (f"# {tweak}\n" if tweak and group.name == "edge" else "")
        groups.append(
            GroupRevision(
                name=group.name,
                selector=group.selector,
                priority=group.priority,
                config=text,
                config_hash=config_hash(text),
                pipelines=group.pipelines,
            )
        )
    return RevisionPublish(
        commit_sha=sha,
        previous_commit_sha=previous,
        message=f"example revision {sha[:7]} {tweak}".strip(),
        author="Demo Author <demo@example.com>",
        committed_at=datetime.now(UTC),
        source="example-config-repo",
        groups=groups,
        pipelines=result.pipelines,
    )


def register_agents(
    store: Store, count: int, *, prefix: str = "host", metrics_url: Callable[[int], str] | None = None
) -> list[str]:
    """Register `count` agents over the tiers above; most report the desired config (Synced), some
    report a failed apply, some never report. Returns the agent ids in registration order.
    `metrics_url(i)`: the metrics page of agent i (bench/ui.py points it at a simulated fleet)."""
    ids = []
    current = {
        g.name: g for g in store.get_revision(store.list_revisions(limit=1).items[0].commit_sha).group_configs
    }
    for i in range(count):
        labels = dict(TIERS[i % len(TIERS)]) | {"zone": f"z{i % 3}"}
        reg = store.register_agent(
            AgentRegistration(
                instance_id=f"instance-{prefix}-{i:06d}",
                hostname=f"{prefix}-{i:05d}.example.net",
                platform="linux/amd64",
                agent_version="0.1.0",
                collector_version="otelcol-contrib 0.135.0",
                labels=labels,
                metrics_url=None if metrics_url is None else metrics_url(i),
            )
        )
        ids.append(reg.agent_id)
        view = store.get_agent(reg.agent_id)
        group = current.get(view.group or "")
        if group is None or i % 11 == 10:
            continue
        failed = i % 13 == 12
        report = StatusReport(
            collector_state="running",
            collector_pid=1000 + i,
            effective_config_hash=None if failed else group.config_hash,
            effective_revision=None if failed else view.desired_revision,
            last_apply=ApplyResult(
                result="failed" if failed else "applied",
                config_hash=group.config_hash,
                revision=view.desired_revision,
                error="collector rejected the config: 'exporters' unknown type" if failed else None,
                at=datetime.now(UTC),
            ),
            uptime_s=120.0,
        )
        store.report_status(reg.agent_id, report)
    return ids


def add_runs(store: Store) -> None:
    now = datetime.now(UTC)
    store.add_reconcile_run(
        ReconcileRunReport(
            started_at=now - timedelta(seconds=5),
            finished_at=now - timedelta(seconds=4),
            source="example-config-repo",
            ref="main",
            commit_sha=SHA2,
            outcome="published",
            timings_s={"fetch": 0.1, "compile": 0.2},
        )
    )
    store.add_reconcile_run(invalid_run(now - timedelta(seconds=3)))


def invalid_run(started_at: datetime) -> ReconcileRunReport:
    """A reconcile run of commit 333... that found a cycle (CT201 at pipelines/app-logs.yaml:12:5)."""
    return ReconcileRunReport(
        started_at=started_at,
        finished_at=started_at + timedelta(seconds=1),
        source="example-config-repo",
        ref="main",
        commit_sha="3" * 40,
        outcome="invalid",
        diagnostics=[
            Diagnostic(
                code="CT201",
                message="pipeline 'app-logs' has a cycle: tail -> batch -> tail",
                hint="remove one of the edges",
                location=Location(file="pipelines/app-logs.yaml", line=12, column=5, node="batch"),
            )
        ],
    )


def seed(store: Store, agents: int = 12) -> list[str]:
    """Two revisions (edge differs), agents, runs. Returns the agent ids."""
    publish_example(store, SHA1, None)
    publish_example(store, SHA2, SHA1, tweak="second revision")
    ids = register_agents(store, agents)
    add_runs(store)
    return ids
