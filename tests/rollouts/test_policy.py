"""RolloutPolicy files: schema, CT7xx checks with exact positions, and the steps `plan` shows."""

from __future__ import annotations

from pathlib import Path

from compiler.api import compile_repo
from compiler.scope import scope_of
from reconciler.explain import to_json, to_text
from reconciler.git import GitRepo
from reconciler.plan import build_plan
from schemas.repo import RolloutStep, parse_duration
from tests.compiler.helpers import EXAMPLE, read_repo
from tests.reconciler.gitutil import commit, edit, init_repo

BAD = """kind: RolloutPolicy
name: edge
groups: [edge-canary, egde]
steps:
  - group: gateway
  - weight: 50
  - analysis: {duration: 5 minutes}
  - weight: 20
  - pause: {duration: 0s}
analysis:
  interval: 10x
  checks:
    - {metric: send_failure_rate, max: 0.1}
    - {metric: throughput, max: 3}
    - {metric: send_failure_ratio, max: 5, signal: logs}
"""


def _codes(files: dict[str, bytes]) -> list[str]:
    return [d.format_text() for d in compile_repo(files).diagnostics]


def test_the_example_policy_is_valid_and_reaches_the_result() -> None:
    result = compile_repo(read_repo(EXAMPLE))
    assert result.ok, [d.format_text() for d in result.diagnostics]
    [policy] = result.rollouts
    assert policy.name == "edge" and policy.groups == ["edge-canary", "edge"]
    assert [s.action for s in policy.steps][:3] == ["group", "analysis", "weight"]


def test_every_problem_of_a_bad_policy_is_reported_at_its_position() -> None:
    files = read_repo(EXAMPLE)
    files["rollouts/edge.yaml"] = BAD.encode()
    lines = [line for line in _codes(files) if line.startswith("rollouts/")]
    assert lines == [
        "rollouts/edge.yaml:3:23: error CT701: rollout policy 'edge' names group 'egde',"
        " which no groups/ file defines",
        "rollouts/edge.yaml:5:12: error CT705: step 1 rolls out group 'gateway', which policy 'edge'"
        " does not cover",
        "rollouts/edge.yaml:7:26: error CT702: duration '5 minutes' does not parse",
        "rollouts/edge.yaml:8:13: error CT704: step 4: weight 20 does not raise the previous weight 50",
        "rollouts/edge.yaml:9:23: error CT702: duration '0s' does not parse",
        "rollouts/edge.yaml:11:13: error CT702: duration '10x' does not parse",
        "rollouts/edge.yaml:13:16: error CT703: unknown rollout metric 'send_failure_rate'",
        "rollouts/edge.yaml:14:7: error CT707: check 'throughput' compares with the old revision: it"
        " takes vs_baseline: {min_ratio: R}, not max",
        "rollouts/edge.yaml:15:41: error CT707: check 'send_failure_ratio' is a ratio (0 to 1): max 5.0"
        " can never fail",
        "rollouts/edge.yaml:15:52: error CT707: check 'send_failure_ratio' takes no signal (it counts every"
        " signal)",
    ]
    hint = next(d.hint for d in compile_repo(files).diagnostics if d.code == "CT703")
    assert hint == "did you mean 'send_failure_ratio'?"
    assert not compile_repo(files).configs  # a bad policy publishes nothing


def test_schema_errors_and_overlaps() -> None:
    files = read_repo(EXAMPLE)
    files["rollouts/two.yaml"] = (
        b"kind: RolloutPolicy\nname: two\ngroups: [edge]\nsteps:\n  - {weight: 5}\n"
        b"analysis: {checks: [{metric: collector_restarts, max: 0}]}\n"
    )
    files["rollouts/three.yaml"] = (
        b"kind: RolloutPolicy\nname: three\ngroups: [gateway]\nsteps:\n  - {group: gateway, weight: 5}\n"
        b"analysis: {checks: [{metric: collector_restarts, max: 0}]}\nonfailure: pause\n"
    )
    lines = [line for line in _codes(files) if line.startswith(("rollouts/two", "rollouts/three"))]
    assert lines == [
        "rollouts/three.yaml:5:5: error CT104: steps[0]: Value error, a step has exactly one of group,"
        " weight, analysis, pause (found group, weight)",
        "rollouts/three.yaml:7:1: error CT104: unknown field 'onfailure'",
        "rollouts/two.yaml:3:10: error CT706: group 'edge' is covered by rollout policies 'edge' and 'two'",
        "rollouts/two.yaml:5:3: warning CT708: rollout policy 'two' has no analysis step: no metric ever"
        " judges its steps",
    ]
    files["rollouts/dup.yaml"] = files["rollouts/edge.yaml"]
    dup = "CT709: rollout policy 'edge' is already defined in rollouts/dup.yaml"
    assert any(dup in x for x in _codes(files))


def test_no_analysis_step_is_a_warning_only() -> None:
    files = read_repo(EXAMPLE)
    files["rollouts/edge.yaml"] = (
        b"kind: RolloutPolicy\nname: edge\ngroups: [edge]\nsteps:\n  - weight: 50\n  - pause: {}\n"
        b"analysis: {checks: [{metric: apply_failed_agents, max: 0}]}\n"
    )
    result = compile_repo(files)
    assert result.ok
    assert [d.code for d in result.diagnostics] == ["CT708"]


def test_durations_and_steps_in_words() -> None:
    assert parse_duration("500ms") == 0.5 and parse_duration("1.5m") == 90 and parse_duration("2h") == 7200
    assert parse_duration("8d") is None and parse_duration("-1s") is None and parse_duration("1000h") is None
    assert RolloutStep(weight=50).describe() == "50 % of each group"
    assert RolloutStep.model_validate({"pause": {}}).describe() == "pause until promoted"


def test_a_policy_change_renders_nothing() -> None:
    before = read_repo(EXAMPLE)
    after = dict(before)
    after["rollouts/edge.yaml"] = before["rollouts/edge.yaml"].replace(b"2m", b"3m")
    assert scope_of(before, after, ["rollouts/edge.yaml"]).groups == frozenset()


def test_plan_shows_the_steps_of_covered_groups(tmp_path: Path) -> None:
    repo = init_repo(tmp_path / "cfg")
    edit(repo, "groups/edge.yaml", "batch_timeout: 2s", "batch_timeout: 3s")
    edit(repo, "groups/gateway.yaml", "pprof: {}", "pprof: {endpoint: 127.0.0.1:1778}")
    commit(repo, "slower batches on edge")
    with GitRepo.open(repo) as r:
        plan = build_plan(r, "HEAD~1", "HEAD")
    [steps] = plan.rollouts
    assert steps.policy == "edge" and steps.groups == ("edge",)
    assert steps.steps[0] == "group edge-canary" and steps.steps[2] == "50 % of each group"
    text = to_text(plan)
    assert "rollout edge for edge (on failure: rollback):\n    1. group edge-canary\n" in text
    assert "published at once (no rollout policy): gateway" in text
    assert '"policy": "edge"' in to_json(plan)


def test_refused_ratio_is_a_ratio_check() -> None:
    files = read_repo(EXAMPLE)
    good = (
        b"kind: RolloutPolicy\nname: edge\ngroups: [edge-canary, edge]\nsteps:\n  - {group: edge-canary}\n"
        b"  - {analysis: {duration: 1m}}\nanalysis: {checks: [{metric: refused_ratio, max: 0.05}]}\n"
    )
    files["rollouts/edge.yaml"] = good
    result = compile_repo(files)
    assert result.ok, [d.format_text() for d in result.diagnostics]
    assert [c.metric for c in result.rollouts[0].analysis.checks] == ["refused_ratio"]
    files["rollouts/edge.yaml"] = good.replace(b"max: 0.05", b"max: 2, signal: logs")
    assert [line for line in _codes(files) if line.startswith("rollouts/")] == [
        "rollouts/edge.yaml:7:50: error CT707: check 'refused_ratio' is a ratio (0 to 1): max 2.0 can never"
        " fail",
        "rollouts/edge.yaml:7:61: error CT707: check 'refused_ratio' takes no signal (it counts every"
        " signal)",
    ]
    files["rollouts/edge.yaml"] = good.replace(b"refused_ratio", b"refused_rate")
    hint = next(d.hint for d in compile_repo(files).diagnostics if d.code == "CT703")
    assert hint == "did you mean 'refused_ratio'?"
