"""plan on real Git repos: scope (changed files -> pipelines -> groups, widening with reasons),
per-group diffs, pipelines added/removed/changed, invalid head, and every output format."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from compiler.scope import _mark_patterns, _marker, scope_of
from reconciler.explain import MARKER, to_github, to_json, to_markdown, to_text
from reconciler.git import GitRepo
from reconciler.plan import GroupChange, Plan, build_plan
from tests.reconciler.gitutil import EXAMPLE, commit, edit, git, head, init_repo

AUDIT_PIPELINE = """kind: Pipeline
name: {name}
groups: [{groups}]
signals: [logs]
nodes:
  - {{id: tail, class: receiver, type: filelog, config: {{include: [/var/log/audit.log]}}}}
  - {{id: ship, class: exporter, type: otlphttp, config: {{endpoint: "http://127.0.0.1:4318"}}}}
edges:
  - {{from: tail, to: ship}}
"""
NEW_PIPELINE = AUDIT_PIPELINE.format(name="gateway-audit", groups="gateway")


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return init_repo(tmp_path / "cfg")


def plan_of(repo: Path, base: str = "HEAD~1", head_ref: str = "HEAD", **kw: object) -> Plan:
    with GitRepo.open(repo) as r:
        return build_plan(r, base, head_ref, **kw)  # type: ignore[arg-type]


def by_group(plan: Plan) -> dict[str, GroupChange]:
    return {c.group: c for c in plan.changes}


def test_one_pipeline_change_touches_only_its_group(repo: Path) -> None:
    edit(repo, "pipelines/app-logs.yaml", "start_at: end", "start_at: beginning")
    commit(repo, "read from the start")
    plan = plan_of(repo)
    assert plan.valid and plan.has_changes
    assert [c.group for c in plan.changes] == ["edge"]
    edge = by_group(plan)["edge"]
    assert edge.kind == "update" and edge.pipelines_changed == ("app-logs",)
    assert "-    start_at: end" in edge.diff and "+    start_at: beginning" in edge.diff
    assert edge.reasons == ("pipeline app-logs (pipelines/app-logs.yaml) changed",)
    assert plan.widened == ()
    assert plan.pipelines_changed == ("app-logs",)
    (f,) = plan.files
    assert f.path == "pipelines/app-logs.yaml" and f.status == "modified" and f.groups == ("edge",)
    line = (repo / "pipelines/app-logs.yaml").read_text().splitlines().index("      start_at: beginning") + 1
    assert f.lines == ((line, line),)


def test_settings_change_widens_to_every_group_and_says_why(repo: Path) -> None:
    edit(repo, "ctrltower.yaml", "metrics_port: 8888", "metrics_port: 9999")
    commit(repo, "move telemetry port")
    plan = plan_of(repo)
    groups = {p.stem for p in (EXAMPLE / "groups").glob("*.yaml")}
    assert {c.group for c in plan.changes} == groups
    assert all(c.kind == "update" for c in plan.changes)
    assert any("ctrltower.yaml changed" in w for w in plan.widened)


def test_group_file_change_widens_to_that_group(repo: Path) -> None:
    edit(repo, "groups/edge.yaml", "batch_timeout: 2s", "batch_timeout: 7s")
    commit(repo, "slower batches")
    plan = plan_of(repo)
    assert [c.group for c in plan.changes] == ["edge"]
    assert "+    timeout: 7s" in plan.changes[0].diff
    assert plan.widened == ("groups/edge.yaml changed: group edge re-rendered in full",)


def test_readme_change_renders_nothing(repo: Path) -> None:
    commit(repo, "docs", README__md="more words\n")  # README__md -> README/md: not a repo file either
    edit(repo, "README.md", "config repo", "the config repo")
    commit(repo, "docs again")
    plan = plan_of(repo, "HEAD~2")
    assert plan.valid and not plan.has_changes and plan.changes == ()
    assert "no change to any group's rendered config" in to_text(plan)


def test_added_pipeline_and_removed_group(repo: Path) -> None:
    commit(repo, "unrelated docs", docs__notes="x\n")
    (repo / "pipelines/gateway-audit.yaml").write_text(NEW_PIPELINE)
    git(repo, "rm", "-q", "groups/edge-canary.yaml", "pipelines/app-logs-canary.yaml")
    git(repo, "rm", "-q", "rollouts/edge.yaml")  # its policy names the canary ring (CT701 otherwise)
    commit(repo, "audit pipeline, drop the canary ring")
    plan = plan_of(repo, "HEAD~2")
    assert plan.valid, [d.format_text() for d in plan.diagnostics]
    changes = by_group(plan)
    assert changes["gateway"].kind == "update"
    assert changes["gateway"].pipelines_added == ("gateway-audit",)
    assert changes["edge-canary"].kind == "delete"
    assert changes["edge-canary"].pipelines_removed == ("app-logs-canary",)
    assert plan.pipelines_added == ("gateway-audit",)
    assert plan.pipelines_removed == ("app-logs-canary",)
    statuses = {f.path: f.status for f in plan.files}
    assert statuses["groups/edge-canary.yaml"] == "deleted"
    assert statuses["pipelines/gateway-audit.yaml"] == "added"


def test_invalid_head_reports_every_diagnostic(repo: Path) -> None:
    edit(repo, "pipelines/app-logs.yaml", "type: batch", "type: no-such-processor")
    edit(repo, "pipelines/gateway-logs.yaml", "kind: Pipeline", "kind: Pipeline\nbogus: 1")
    commit(repo, "two mistakes")
    plan = plan_of(repo)
    assert not plan.valid and plan.changes == ()
    files = {d.location.file for d in plan.diagnostics if d.severity == "error"}
    assert files == {"pipelines/app-logs.yaml", "pipelines/gateway-logs.yaml"}
    gh = to_github(plan)
    assert "::error file=pipelines/app-logs.yaml,line=" in gh
    assert "head is invalid" in to_text(plan)


def test_unloadable_pipeline_widens_to_everyone() -> None:
    base = {"groups/a.yaml": b"kind: AgentGroup\nname: a\n", "groups/b.yaml": b"kind: AgentGroup\nname: b\n"}
    head = {**base, "pipelines/x.yaml": b"kind: [unclosed"}
    scope = scope_of(base, head, ["pipelines/x.yaml"])
    assert scope.groups == {"a", "b"}
    assert scope.widened == ("pipelines/x.yaml does not load at head: every group is re-rendered",)


def test_subdir_and_live_agent_counts(tmp_path: Path) -> None:
    repo = init_repo(tmp_path / "mono", subdir="otel")
    edit(repo, "otel/pipelines/k8s-pod-logs.yaml", "k8s", "k8s")  # no-op edit keeps the file
    commit(repo, "touch nothing", otel__groups__k8s_nodes_note="x\n")
    edit(repo, "otel/groups/k8s-nodes.yaml", "tier: k8s", "tier: kubernetes")
    commit(repo, "retarget k8s nodes")
    plan = plan_of(repo, "HEAD~2", subdir="otel", agents_per_group={"k8s-nodes": 7})
    change = by_group(plan)["k8s-nodes"]
    assert change.kind == "no-op" and change.agents == 7  # the selector is not in the rendered config
    assert "otel/groups/k8s-nodes.yaml" in {f.path for f in plan.files}
    assert not plan.has_changes


def test_formats_describe_the_same_plan(repo: Path) -> None:
    edit(repo, "pipelines/gateway-traces.yaml", "gateway", "gateway")
    edit(repo, "groups/gateway.yaml", "priority: 10", "priority: 20")
    (repo / "pipelines/gateway-audit.yaml").write_text(NEW_PIPELINE)
    commit(repo, "audit")
    plan = plan_of(repo, agents_per_group={"gateway": 3})
    data = json.loads(to_json(plan))
    assert data["valid"] and data["has_changes"]
    assert [c["group"] for c in data["changes"]] == ["gateway"]
    assert data["changes"][0]["agents"] == 3
    md = to_markdown(plan)
    assert md.startswith(MARKER)
    assert "<details><summary><code>gateway</code>: update, 3 live agents</summary>" in md
    assert "```diff" in md and "| `gateway` | update |" in md
    gh = to_github(plan)
    assert "::notice file=pipelines/gateway-audit.yaml,line=1,endLine=" in gh
    assert "changes the rendered config of gateway (update, 3 live agents)" in gh
    assert "~ group gateway: update, 3 live agents" in to_text(plan)


def _big_plan(groups: int, lines: int) -> Plan:
    diff = "".join(f"+    key{i}: {'v' * 60}\n" for i in range(lines))
    changes = tuple(
        GroupChange(group=f"g{i:03d}", kind="update", reasons=(), old_hash="a", new_hash="b", diff=diff)
        for i in range(groups)
    )
    return Plan(
        base="a" * 40, head="b" * 40, subdir="", files=(), widened=(), changes=changes, diagnostics=()
    )


def test_markdown_is_cut_before_githubs_comment_limit() -> None:
    plan = _big_plan(groups=40, lines=100)  # ~300 KB of diffs
    md = to_markdown(plan)
    assert len(md) < 65_536
    assert "output cut to fit GitHub's 65,536-character comment limit" in md
    assert md.count("<details>") == md.count("</details>")
    shown = md.count("<details><summary><code>g")
    assert 0 < shown < 40 and f"{40 - shown} group diff(s) not shown" in md


def test_markdown_cuts_inside_one_huge_diff() -> None:
    md = to_markdown(_big_plan(groups=1, lines=5000))
    assert len(md) < 65_536 and "diff cut here" in md and md.count("```") == 2


def test_small_plan_is_not_cut() -> None:
    md = to_markdown(_big_plan(groups=2, lines=5))
    assert "cut" not in md and md.count("<details><summary>") == 2


def test_base_and_head_may_be_shas(repo: Path) -> None:
    base = head(repo)
    edit(repo, "pipelines/k8s-pod-logs.yaml", "k8s-pod-logs", "k8s-pod-logs")
    edit(repo, "pipelines/app-logs.yaml", "start_at: end", "start_at: beginning")
    new = commit(repo, "x")
    assert plan_of(repo, base[:8], new).changes[0].group == "edge"


MULTI_GROUP = AUDIT_PIPELINE.format(name="shared-audit", groups="gateway, k8s-nodes")


def _change_app_logs(repo: Path) -> None:
    edit(repo, "pipelines/app-logs.yaml", "start_at: end", "start_at: beginning")


def _multi_group_pipeline(repo: Path) -> None:
    (repo / "pipelines/shared-audit.yaml").write_text(MULTI_GROUP)


def _duplicate_pipeline_name(repo: Path) -> None:
    # a new file reusing the name of an unchanged pipeline of another group: CT112
    (repo / "pipelines/zz-dup.yaml").write_text(NEW_PIPELINE.replace("gateway-audit", "app-logs"))


def _remove_group_still_named(repo: Path) -> None:
    git(repo, "rm", "-q", "groups/edge-canary.yaml")  # app-logs-canary still names it: CT211


def _escaped_member_of_changed_group(repo: Path) -> None:
    # already at base: a pipeline that names group edge only through a YAML escape ("\x65" = "e")
    escaped = NEW_PIPELINE.replace("gateway-audit", "escaped").replace("[gateway]", '["\\x65dge"]')
    (repo / "pipelines/escaped.yaml").write_text(escaped)
    commit(repo, "escaped member")
    _change_app_logs(repo)


def _rename_group_file(repo: Path) -> None:
    git(repo, "mv", "groups/edge.yaml", "groups/edge-hosts.yaml")


@pytest.mark.parametrize(
    "change",
    [
        _change_app_logs,
        _multi_group_pipeline,
        _duplicate_pipeline_name,
        _remove_group_still_named,
        _rename_group_file,
        _escaped_member_of_changed_group,
    ],
)
def test_scoped_plan_equals_full_plan(repo: Path, change: object) -> None:
    """The scoped plan (a subset of files compiled) says exactly what the full plan says."""
    change(repo)  # type: ignore[operator]
    commit(repo, "change")
    scoped, full = plan_of(repo), plan_of(repo, full=True)
    assert scoped.validated_files < full.validated_files == full.repo_files
    assert scoped.changes == full.changes
    assert [d.format_text() for d in scoped.diagnostics] == [d.format_text() for d in full.diagnostics]
    # (old_hash/new_hash in `changes` differ if a member pipeline were left out of a render)
    assert (scoped.pipelines_added, scoped.pipelines_removed, scoped.pipelines_changed) == (
        full.pipelines_added,
        full.pipelines_removed,
        full.pipelines_changed,
    )


_NAMES = st.lists(st.sampled_from(["edge", "g20", "app-logs", "e", "Not A Name", "x.y"]), max_size=4)
_TEXT = st.lists(
    st.sampled_from(
        ["edge", "g20", "g200", "app-logs", "-", ".", "_", ":", " ", "\n", "\\", "!", "[", "]", "x"]
    ),
    max_size=12,
).map("".join)


@given(names=_NAMES, text=_TEXT)
def test_marker_prefilter_answers_like_the_regex(names: list[str], text: str) -> None:
    """The substring pre-filter in front of the mention regex never changes its answer."""
    regex = re.compile(b"|".join(_mark_patterns(names)), re.MULTILINE)
    assert _marker(names).search(text.encode()) == (regex.search(text.encode()) is not None)
