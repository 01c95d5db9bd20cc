"""One measurement of a rollout's analysis: every check's value against its threshold (pure).

Inputs are what the controller gathered for one interval: the agents of the rollout's groups (which
revision each is served, whether it runs it, whether its collector rejected it), each agent's counter
increases from the metrics store over the interval (`metrics.query.sums`), the collector crashes
reported in it, and the last baseline rate seen. The result is kept as evidence (rollout_measurements).

- ratio checks (send_failure_ratio, refused_ratio) and throughput look only at new-revision agents
  that run it and have metrics for the interval; fewer than `min_agents` of them: inconclusive, never a pass.
- throughput compares the mean per-agent rate of the new revision's agents with the old revision's
  agents of the same group; a group wholly on the new revision (a canary group) is compared with the
  old agents of the rollout's other groups, and when none are left (100 %) with the last baseline seen.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from schemas.api import CheckResult, Verdict
from schemas.repo import RolloutAnalysis, RolloutCheck

OUT_COLUMNS = {"logs": "logs_out", "metrics": "metrics_out", "traces": "traces_out"}
IN_COLUMNS = {"logs": "logs_in", "metrics": "metrics_in", "traces": "traces_in"}


@dataclass(frozen=True)
class AgentSample:
    id: str
    group: str
    on_new: bool  # served the new revision
    running: bool  # reports the config hash it is served
    apply_failed: bool  # its collector rejected the config it is served


def _out(sums: Mapping[str, float], signal: str | None) -> float:
    cols = [OUT_COLUMNS[signal]] if signal else list(OUT_COLUMNS.values())
    return sum(sums.get(c, 0.0) for c in cols)


def _verdict(checks: list[CheckResult]) -> Verdict:
    if any(c.verdict == "fail" for c in checks):
        return "fail"
    if any(c.verdict == "inconclusive" for c in checks):
        return "inconclusive"
    return "pass"


def measure(
    analysis: RolloutAnalysis,
    agents: list[AgentSample],
    sums: Mapping[str, Mapping[str, float]] | None,
    crashes: int,
    last_baseline: float | None,
    min_covered_s: float = 0.0,
) -> tuple[Verdict, list[CheckResult]]:
    """(verdict, checks) of one measurement. `sums` None: the metrics store did not answer.

    An agent has data when its rows cover at least `min_covered_s` of the window: a collector
    updates its own counters about once a second, so one short scrape can read an increase of 0."""
    new = [a for a in agents if a.on_new]
    floor = max(min_covered_s, 1e-9)
    with_data = [
        a for a in new if a.running and sums is not None and sums.get(a.id, {}).get("dt", 0) >= floor
    ]
    checks = [
        _check(c, analysis, agents, new, with_data, sums, crashes, last_baseline, floor)
        for c in analysis.checks
    ]
    return _verdict(checks), checks


def _result(
    check: RolloutCheck,
    value: float | None,
    detail: str,
    *,
    threshold: float,
    min_ratio: bool = False,
    baseline: float | None = None,
) -> CheckResult:
    if value is None:
        verdict: Verdict = "inconclusive"
    elif not min_ratio:
        verdict = "pass" if value <= threshold else "fail"
    else:
        verdict = "pass" if value >= threshold else "fail"
    return CheckResult(
        metric=check.metric,
        signal=check.signal,
        value=value,
        threshold=threshold,
        comparison="min_ratio" if min_ratio else "max",
        verdict=verdict,
        detail=detail,
        baseline=baseline,
    )


def _check(
    check: RolloutCheck,
    analysis: RolloutAnalysis,
    agents: list[AgentSample],
    new: list[AgentSample],
    with_data: list[AgentSample],
    sums: Mapping[str, Mapping[str, float]] | None,
    crashes: int,
    last_baseline: float | None,
    floor: float,
) -> CheckResult:
    ratio_check = check.vs_baseline is not None
    limit = check.vs_baseline.min_ratio if check.vs_baseline is not None else (check.max or 0.0)
    if not new:
        return _result(
            check, None, "no agent runs the new revision yet", threshold=limit, min_ratio=ratio_check
        )
    if check.metric == "apply_failed_agents":
        failed = sum(1 for a in new if a.apply_failed)
        return _result(
            check, float(failed), f"{failed} of {len(new)} new-revision agents ApplyFailed", threshold=limit
        )
    if check.metric == "collector_restarts":
        return _result(
            check, float(crashes), f"{crashes} collector crash(es) on {len(new)} agents", threshold=limit
        )
    if sums is None:
        return _result(
            check, None, "the metrics store did not answer", threshold=limit, min_ratio=ratio_check
        )
    if len(with_data) < analysis.min_agents:
        detail = f"{len(with_data)} new-revision agent(s) with metrics, min_agents is {analysis.min_agents}"
        return _result(check, None, detail, threshold=limit, min_ratio=ratio_check)
    n = len(with_data)
    if check.metric == "send_failure_ratio":
        failed_items = sum(sums[a.id].get("send_failed", 0.0) for a in with_data)
        sent = sum(_out(sums[a.id], None) for a in with_data)
        return _share(check, limit, failed_items, "failed", sent, "sent", f"{n} agents sent nothing", n)
    if check.metric == "refused_ratio":
        # what the receivers refused (a memory_limiter or an exporter queue pushing back) out of
        # everything offered to them: accepted + refused, every signal
        refused = sum(sums[a.id].get("refused", 0.0) for a in with_data)
        accepted = sum(sums[a.id].get(c, 0.0) for a in with_data for c in IN_COLUMNS.values())
        nothing = f"{n} agents received nothing"
        return _share(check, limit, refused, "refused", accepted, "accepted", nothing, n)
    return _throughput(check, limit, agents, with_data, sums, last_baseline, floor)


def _share(
    check: RolloutCheck,
    limit: float,
    bad: float,
    bad_word: str,
    good: float,
    good_word: str,
    nothing: str,
    n: int,
) -> CheckResult:
    """A ratio check: the bad items' share of all (bad + good), over the new revision's agents."""
    if bad + good <= 0:
        return _result(check, None, nothing, threshold=limit)
    detail = f"{bad:.0f} items {bad_word}, {good:.0f} {good_word} by {n} agents"
    return _result(check, bad / (bad + good), detail, threshold=limit)


def _throughput(
    check: RolloutCheck,
    threshold: float,
    agents: list[AgentSample],
    with_data: list[AgentSample],
    sums: Mapping[str, Mapping[str, float]],
    last_baseline: float | None,
    floor: float,
) -> CheckResult:
    """The worst group's ratio of per-agent rates, new revision / old revision."""

    def rate(a: AgentSample) -> float:
        s = sums[a.id]
        return _out(s, check.signal) / s["dt"]

    old = [a for a in agents if not a.on_new and a.running and sums.get(a.id, {}).get("dt", 0) >= floor]
    old_all = [rate(a) for a in old]
    worst: tuple[float, float, str] | None = None
    for group in sorted({a.group for a in with_data}):
        new_rates = [rate(a) for a in with_data if a.group == group]
        same = [rate(a) for a in old if a.group == group]
        if same:
            base, source = sum(same) / len(same), f"{len(same)} old agents of {group}"
        elif old_all:
            base, source = sum(old_all) / len(old_all), f"{len(old_all)} old agents of the rollout"
        elif last_baseline is not None:
            base, source = last_baseline, "the last baseline measured"
        else:
            continue
        mean_new = sum(new_rates) / len(new_rates)
        ratio = 1.0 if base <= 0 and mean_new <= 0 else (mean_new / base if base > 0 else 10.0)
        if worst is None or ratio < worst[0]:
            worst = (ratio, base, f"{group}: {mean_new:.2f}/s per new agent vs {base:.2f}/s ({source})")
    if worst is None:
        return _result(
            check, None, "no old-revision agents to compare with", threshold=threshold, min_ratio=True
        )
    return _result(check, worst[0], worst[2], threshold=threshold, min_ratio=True, baseline=worst[1])
