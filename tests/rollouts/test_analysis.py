"""webui/rollouts/analysis.py, the pure core of a measurement: each check's value, verdict and
evidence from given agent samples and counter sums (the e2e tests feed it from real collectors)."""

from __future__ import annotations

from schemas.repo import RolloutAnalysis, RolloutCheck
from webui.rollouts.analysis import AgentSample, measure


def analysis(*checks: RolloutCheck, min_agents: int = 1) -> RolloutAnalysis:
    return RolloutAnalysis(interval="10s", min_agents=min_agents, checks=list(checks))


REFUSED = RolloutCheck(metric="refused_ratio", max=0.1)


def agent(name: str, *, on_new: bool = True, running: bool = True) -> AgentSample:
    return AgentSample(id=name, group="edge", on_new=on_new, running=running, apply_failed=False)


def sums(**per_agent: dict[str, float]) -> dict[str, dict[str, float]]:
    return {name: {"dt": 10.0} | values for name, values in per_agent.items()}


def test_refused_ratio_is_refused_over_everything_offered_to_the_receivers() -> None:
    # a: 30 refused of 100 offered (logs); b: nothing refused of 100 (metrics and traces): 30/200
    verdict, [check] = measure(
        analysis(REFUSED),
        [agent("a"), agent("b"), agent("old", on_new=False)],
        sums(
            a={"logs_in": 70.0, "refused": 30.0},
            b={"metrics_in": 60.0, "traces_in": 40.0},
            old={"logs_in": 0.0, "refused": 1000.0},  # not on the new revision: not counted
        ),
        crashes=0,
        last_baseline=None,
    )
    assert verdict == "fail"
    assert check.metric == "refused_ratio" and check.comparison == "max" and check.threshold == 0.1
    assert check.value == 0.15 and check.verdict == "fail"
    assert check.detail == "30 items refused, 170 accepted by 2 agents"


def test_refused_ratio_passes_at_or_under_its_max() -> None:
    verdict, [check] = measure(
        analysis(REFUSED),
        [agent("a")],
        sums(a={"logs_in": 90.0, "refused": 10.0}),
        crashes=0,
        last_baseline=None,
    )
    assert verdict == "pass" and check.value == 0.1 and check.verdict == "pass"


def test_refused_ratio_without_traffic_or_agents_is_inconclusive_never_a_pass() -> None:
    quiet = measure(analysis(REFUSED), [agent("a")], sums(a={}), crashes=0, last_baseline=None)
    assert quiet[0] == "inconclusive" and quiet[1][0].value is None
    assert quiet[1][0].detail == "1 agents received nothing"
    # the metrics store did not answer
    down = measure(analysis(REFUSED), [agent("a")], None, crashes=0, last_baseline=None)
    assert down[1][0].verdict == "inconclusive" and down[1][0].detail == "the metrics store did not answer"
    # fewer new-revision agents with metrics than min_agents (b is not running the revision yet)
    few = measure(
        analysis(REFUSED, min_agents=2),
        [agent("a"), agent("b", running=False)],
        sums(a={"logs_in": 10.0, "refused": 90.0}, b={"logs_in": 10.0}),
        crashes=0,
        last_baseline=None,
    )
    assert few[1][0].verdict == "inconclusive" and "min_agents is 2" in few[1][0].detail
    # nobody on the new revision yet
    none = measure(analysis(REFUSED), [agent("a", on_new=False)], sums(a={}), crashes=0, last_baseline=None)
    assert none[1][0].detail == "no agent runs the new revision yet"


def test_refused_ratio_is_judged_with_the_other_checks() -> None:
    verdict, checks = measure(
        analysis(RolloutCheck(metric="send_failure_ratio", max=0.5), REFUSED),
        [agent("a")],
        sums(a={"logs_in": 10.0, "logs_out": 10.0, "refused": 90.0}),
        crashes=0,
        last_baseline=None,
    )
    assert [(c.metric, c.verdict) for c in checks] == [
        ("send_failure_ratio", "pass"),
        ("refused_ratio", "fail"),
    ]
    assert verdict == "fail"
