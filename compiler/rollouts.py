"""Checks of `rollouts/*.yaml` (kind: RolloutPolicy) beyond their schema: CT701-CT708.

Pure: a LoadedRepo in, diagnostics out. What a policy means at run time (steps, analysis, rollback)
is the server's (webui/rollouts/); here we only make sure every name, duration and check it holds is
one the server understands, so a bad policy is a review comment, not a stuck rollout.
"""

from __future__ import annotations

import difflib
from typing import Literal

from compiler.loader import Source, diagnostic
from compiler.repo import LoadedRepo, LoadedRollout
from schemas.diagnostics import Diagnostic
from schemas.repo import CHECK_METRICS, parse_duration


def _diag(
    code: str,
    message: str,
    lr: LoadedRollout,
    path: tuple[str | int, ...],
    *,
    hint: str | None = None,
    severity: Literal["error", "warning"] = "error",
) -> Diagnostic:
    return diagnostic(Source(lr.file, lr.positions), path, code, message, hint=hint, severity=severity)


def _group_hint(name: str, defined: list[str]) -> str:
    close = difflib.get_close_matches(name, defined, n=1)
    if close:
        return f"did you mean '{close[0]}'?"
    return f"defined groups: {', '.join(defined)}" if defined else "add groups/<name>.yaml"


def check_rollouts(repo: LoadedRepo) -> list[Diagnostic]:
    """Every problem of every policy (unsorted; compile_repo sorts)."""
    diags: list[Diagnostic] = []
    defined = sorted(repo.groups)
    known = set(repo.groups) | repo.broken_groups
    owner: dict[str, str] = {}  # group -> the policy (name) that covers it first, by policy name
    for name in sorted(repo.rollouts):
        lr = repo.rollouts[name]
        policy = lr.model
        for k, group in enumerate(policy.groups):
            if group not in known:
                diags.append(
                    _diag(
                        "CT701",
                        f"rollout policy '{name}' names group '{group}', which no groups/ file defines",
                        lr,
                        ("groups", k),
                        hint=_group_hint(group, defined),
                    )
                )
            elif group in owner and owner[group] != name:
                diags.append(
                    _diag(
                        "CT706",
                        f"group '{group}' is covered by rollout policies '{owner[group]}' and '{name}'",
                        lr,
                        ("groups", k),
                        hint="a group follows one policy: remove it from one of them",
                    )
                )
            else:
                owner.setdefault(group, name)
        diags.extend(_check_steps(lr, known, defined))
        diags.extend(_check_analysis(lr))
    return diags


def _check_steps(lr: LoadedRollout, known: set[str], defined: list[str]) -> list[Diagnostic]:
    policy = lr.model
    diags: list[Diagnostic] = []
    last_weight = 0
    seen_groups: set[str] = set()
    judged = False
    for i, step in enumerate(policy.steps):
        if step.group is not None:
            if step.group not in policy.groups:
                hint = (
                    f"add it to groups: {policy.groups}"
                    if step.group in known
                    else _group_hint(step.group, defined)
                )
                diags.append(
                    _diag(
                        "CT705",
                        f"step {i + 1} rolls out group '{step.group}', which policy '{policy.name}'"
                        " does not cover",
                        lr,
                        ("steps", i, "group"),
                        hint=hint,
                    )
                )
            elif step.group in seen_groups:
                diags.append(
                    _diag(
                        "CT705",
                        f"step {i + 1} rolls out group '{step.group}' a second time",
                        lr,
                        ("steps", i, "group"),
                    )
                )
            seen_groups.add(step.group)
        if step.weight is not None:
            if step.weight <= last_weight:
                diags.append(
                    _diag(
                        "CT704",
                        f"step {i + 1}: weight {step.weight} does not raise the previous weight"
                        f" {last_weight}",
                        lr,
                        ("steps", i, "weight"),
                        hint="weights only grow (raising N only adds agents): order them 10, 50, 100",
                    )
                )
            last_weight = max(last_weight, step.weight)
        if step.analysis is not None:
            judged = True
            diags.extend(_duration(lr, step.analysis.duration, ("steps", i, "analysis", "duration")))
        if step.pause is not None and step.pause.duration is not None:
            diags.extend(_duration(lr, step.pause.duration, ("steps", i, "pause", "duration")))
    if not judged:
        diags.append(
            _diag(
                "CT708",
                f"rollout policy '{policy.name}' has no analysis step: no metric ever judges its steps",
                lr,
                ("steps",),
                severity="warning",
                hint="add `- analysis: {duration: 5m}` after the steps that add agents",
            )
        )
    return diags


def _duration(lr: LoadedRollout, text: str, path: tuple[str | int, ...]) -> list[Diagnostic]:
    if parse_duration(text) is not None:
        return []
    return [
        _diag(
            "CT702",
            f"duration {text!r} does not parse",
            lr,
            path,
            hint="a positive number with a unit, at most a week: 500ms, 30s, 5m, 1.5h",
        )
    ]


def _check_analysis(lr: LoadedRollout) -> list[Diagnostic]:
    analysis = lr.model.analysis
    diags = _duration(lr, analysis.interval, ("analysis", "interval"))
    for j, check in enumerate(analysis.checks):
        where: tuple[str | int, ...] = ("analysis", "checks", j)
        spec = CHECK_METRICS.get(check.metric)
        if spec is None:
            close = difflib.get_close_matches(check.metric, list(CHECK_METRICS), n=1)
            diags.append(
                _diag(
                    "CT703",
                    f"unknown rollout metric '{check.metric}'",
                    lr,
                    (*where, "metric"),
                    hint=f"did you mean '{close[0]}'?"
                    if close
                    else f"known metrics: {', '.join(sorted(CHECK_METRICS))}",
                )
            )
            continue
        kind = spec[0]
        if kind == "baseline":
            if check.vs_baseline is None or check.max is not None:
                diags.append(
                    _diag(
                        "CT707",
                        f"check '{check.metric}' compares with the old revision: it takes"
                        " vs_baseline: {min_ratio: R}, not max",
                        lr,
                        where,
                    )
                )
        elif check.max is None or check.vs_baseline is not None:
            diags.append(
                _diag(
                    "CT707",
                    f"check '{check.metric}' takes max: N (not vs_baseline)",
                    lr,
                    where,
                )
            )
        elif kind == "ratio" and check.max > 1:
            diags.append(
                _diag(
                    "CT707",
                    f"check '{check.metric}' is a ratio (0 to 1): max {check.max} can never fail",
                    lr,
                    (*where, "max"),
                )
            )
        if check.signal is not None and kind != "baseline":
            diags.append(
                _diag(
                    "CT707",
                    f"check '{check.metric}' takes no signal (it counts every signal)",
                    lr,
                    (*where, "signal"),
                )
            )
    return diags
