"""Renderers of one `Plan`: human text, Markdown for a sticky PR comment, JSON, GitHub annotations.

Each is a pure function of the plan; none decides anything the plan does not already say.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any, Literal

from compiler.report import markdown_text
from reconciler.plan import GroupChange, Plan
from schemas.diagnostics import Diagnostic, printable

Format = Literal["text", "markdown", "json", "github"]
FORMATS: tuple[Format, ...] = ("text", "markdown", "json", "github")

# GitHub rejects comments over 65,536 characters: the cut happens 2,000 characters earlier, which
# leaves room for the note and the closing tags added after it.
MARKDOWN_LIMIT = 65_536
MARKER = "<!-- ctrltower-plan -->"  # lets a workflow find and update its own sticky comment


def render(plan: Plan, fmt: Format) -> str:
    if fmt == "json":
        return to_json(plan)
    if fmt == "markdown":
        return to_markdown(plan)
    if fmt == "github":
        return to_github(plan)
    return to_text(plan)


def _short(sha: str) -> str:
    return sha[:12]


def _agents(change: GroupChange) -> str:
    if change.agents is None:
        return ""
    return f", {change.agents} live agent{'s' if change.agents != 1 else ''}"


def _pipeline_lists(of: Plan | GroupChange) -> list[tuple[str, tuple[str, ...]]]:
    """The pipelines added, removed and changed (a plan's, or one group's): the non-empty lists, in
    the order every format shows them."""
    lists = (
        ("added", of.pipelines_added),
        ("removed", of.pipelines_removed),
        ("changed", of.pipelines_changed),
    )
    return [(label, names) for label, names in lists if names]


def _pipelines_line(change: GroupChange) -> str:
    return "; ".join(f"{label}: {', '.join(names)}" for label, names in _pipeline_lists(change))


def _coverage(plan: Plan) -> str:
    if plan.validated_files >= plan.repo_files:
        return f"validated all {plan.repo_files} repo files of head"
    return (
        f"validated {plan.validated_files} of {plan.repo_files} repo files of head: the changed files and"
        " everything they can affect (--full validates all)"
    )


def _summary(plan: Plan) -> str:
    counts = {k: sum(1 for c in plan.changes if c.kind == k) for k in ("create", "update", "delete")}
    if not plan.valid:
        errors = sum(1 for d in plan.diagnostics if d.severity == "error")
        return f"head is invalid: {errors} error{'s' if errors != 1 else ''}; nothing would be published"
    if not plan.has_changes:
        return "no change to any group's rendered config"
    return f"{counts['create']} to create, {counts['update']} to update, {counts['delete']} to delete"


# --- text ------------------------------------------------------------------------------------------


def to_text(plan: Plan) -> str:
    out = [
        f"Plan {_short(plan.base)}..{_short(plan.head)}" + (f" (path {plan.subdir})" if plan.subdir else "")
    ]
    out.append(f"{len(plan.files)} file(s) changed")
    for f in plan.files:
        groups = f" -> {', '.join(f.groups)}" if f.groups else ""
        out.append(f"  {f.status:<8} {printable(f.path)}{groups}")
    for reason in plan.widened:
        out.append(f"  scope widened: {printable(reason)}")
    out.append(_coverage(plan))
    if plan.diagnostics:
        out.append("")
        out.extend(d.format_text() for d in plan.diagnostics)
    if plan.base_diagnostics:
        out.append(f"note: base has {plan.base_diagnostics} error(s); its configs count as absent")
    for label, names in _pipeline_lists(plan):
        out.append(f"pipelines {label}: {', '.join(names)}")
    for change in plan.changes:
        out.append("")
        out.append(f"{_sign(change)} group {change.group}: {change.kind}{_agents(change)}")
        for reason in change.reasons:
            out.append(f"    because {printable(reason)}")
        line = _pipelines_line(change)
        if line:
            out.append(f"    pipelines {line}")
        if change.diff:
            out.extend("    " + ln for ln in change.diff.rstrip("\n").splitlines())
    out.extend(_rollout_lines(plan))
    out.append("")
    out.append(f"Summary: {_summary(plan)}")
    return "\n".join(out) + "\n"


def _rollout_lines(plan: Plan) -> list[str]:
    """The steps each changed group goes through; groups without a policy get the change at once."""
    if not plan.valid or not plan.has_changes:
        return []
    out = [""]
    covered: set[str] = set()
    for r in plan.rollouts:
        covered.update(r.groups)
        out.append(f"rollout {r.policy} for {', '.join(r.groups)} (on failure: {r.on_failure}):")
        out.extend(f"    {i}. {step}" for i, step in enumerate(r.steps, 1))
    at_once = [c.group for c in plan.changes if c.changes_config and c.group not in covered]
    if at_once:
        out.append(f"published at once (no rollout policy): {', '.join(at_once)}")
    return out


def _sign(change: GroupChange) -> str:
    return {"create": "+", "update": "~", "delete": "-", "no-op": "="}[change.kind]


# --- markdown ---------------------------------------------------------------------------------------


def _fence(text: str) -> str:
    """A code fence longer than any backtick run inside the text."""
    longest = run = 0
    for ch in text:
        run = run + 1 if ch == "`" else 0
        longest = max(longest, run)
    return "`" * max(3, longest + 1)


def to_markdown(plan: Plan, *, limit: int = MARKDOWN_LIMIT) -> str:
    budget = limit - 2_000
    head: list[str] = [
        MARKER,
        f"### ctrltower plan `{_short(plan.base)}..{_short(plan.head)}`",
        "",
        f"**{_summary(plan)}**",
        "",
        f"_{_coverage(plan)}_",
        "",
    ]
    if plan.widened:
        head.extend(f"- scope widened: {r}" for r in plan.widened)
        head.append("")
    if plan.diagnostics:
        head.append("<details open><summary>Diagnostics</summary>\n")
        head.extend(f"- {_md_escape(d.format_text())}" for d in plan.diagnostics)
        head.append("\n</details>\n")
    if plan.changes:
        agents_col = any(c.agents is not None for c in plan.changes)
        head.append("| group | action | pipelines |" + (" live agents |" if agents_col else ""))
        head.append("| --- | --- | --- |" + (" ---: |" if agents_col else ""))
        for c in plan.changes:
            row = f"| `{c.group}` | {c.kind} | {_md_escape(_pipelines_line(c)) or '-'} |"
            if agents_col:
                row += f" {c.agents if c.agents is not None else '-'} |"
            head.append(row)
        head.append("")
    steps = _rollout_lines(plan)
    if steps:
        head.extend(f"- {_md_escape(line.strip())}" if line else "" for line in steps[1:])
        head.append("")
    text = "\n".join(head) + "\n"
    if len(text) > budget:  # a huge diagnostic list: cut it too
        text = text[:budget] + "\n\n"
        return text + _cut_note(len(plan.changes))
    shown = 0
    for c in plan.changes:
        if not c.diff:
            shown += 1
            continue
        section = _group_section(c)
        if len(text) + len(section) > budget:
            room = budget - len(text)
            if room > 2_000 and shown == 0:  # show the start of the first diff rather than nothing
                section = _group_section(c, max_diff=room - 500)
                text += section
                shown += 1
            text += _cut_note(len(plan.changes) - shown)
            return text
        text += section
        shown += 1
    return text


def _group_section(c: GroupChange, *, max_diff: int | None = None) -> str:
    diff = c.diff
    cut = ""
    if max_diff is not None and len(diff) > max_diff:
        diff = diff[:max_diff].rsplit("\n", 1)[0] + "\n"
        cut = "\n_(diff cut here: too long for one comment)_\n"
    fence = _fence(diff)
    reasons = "".join(f"\n- because {_md_escape(r)}" for r in c.reasons)
    return (
        f"<details><summary><code>{c.group}</code>: {c.kind}{_agents(c)}</summary>\n{reasons}\n\n"
        f"{fence}diff\n{diff}{fence}\n{cut}\n</details>\n\n"
    )


def _cut_note(remaining: int) -> str:
    return (
        f"> **Note:** output cut to fit GitHub's 65,536-character comment limit; "
        f"{remaining} group diff(s) not shown. Run `ctrltower plan` locally for the full plan.\n"
    )


def _md_escape(text: str) -> str:
    """Plain text inside Markdown: one line, no table breaks, HTML, code spans, emphasis, links,
    images or @mentions (compiler/report.py's markdown_text)."""
    return markdown_text(text)


# --- json -------------------------------------------------------------------------------------------


def to_dict(plan: Plan) -> dict[str, Any]:
    data = asdict(plan)
    data["diagnostics"] = [d.model_dump(mode="json") for d in plan.diagnostics]
    data.pop("timings_s", None)
    data["valid"] = plan.valid
    data["has_changes"] = plan.has_changes
    return data


def to_json(plan: Plan) -> str:
    return json.dumps(to_dict(plan), indent=2, sort_keys=True) + "\n"


# --- github annotations --------------------------------------------------------------------------------


def _gh_escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _gh_escape_prop(text: str) -> str:
    return _gh_escape_data(text).replace(":", "%3A").replace(",", "%2C")


def _annotation(
    level: str, message: str, *, file: str, line: int, end: int | None, title: str, col: int = 0
) -> str:
    props = [f"file={_gh_escape_prop(file)}"]
    if line:
        props.append(f"line={line}")
        if end and end != line:
            props.append(f"endLine={end}")
        elif col:
            props.append(f"col={col}")
    props.append(f"title={_gh_escape_prop(title)}")
    return f"::{level} {','.join(props)}::{_gh_escape_data(message)}"


def _diag_annotation(plan: Plan, d: Diagnostic) -> str:
    msg = d.message + (f" (hint: {d.hint})" if d.hint else "")
    return _annotation(
        "error" if d.severity == "error" else "warning",
        msg,
        file=plan.repo_path(d.location.file),
        line=d.location.line,
        end=None,
        col=d.location.column,
        title=f"ctrltower {d.code}",
    )


def to_github(plan: Plan) -> str:
    """Workflow commands: diagnostics as errors/warnings, and a notice on each changed line range."""
    lines = [_diag_annotation(plan, d) for d in plan.diagnostics]
    by_group = {c.group: c for c in plan.changes}
    for f in plan.files if plan.valid else ():  # an invalid head renders nothing to point at
        touched = [by_group[g] for g in f.groups if g in by_group and by_group[g].changes_config]
        if touched:
            what = ", ".join(f"{c.group} ({c.kind}{_agents(c)})" for c in touched)
            message = f"changes the rendered config of {what}"
        elif f.groups:
            message = f"no change to the rendered config of {', '.join(f.groups)}"
        else:
            message = "no group's rendered config changes"
        if f.status == "deleted" or not f.lines:
            lines.append(
                _annotation(
                    "notice", f"{f.status}: {message}", file=f.path, line=0, end=None, title="ctrltower plan"
                )
            )
            continue
        for start, end in f.lines:
            lines.append(
                _annotation("notice", message, file=f.path, line=start, end=end, title="ctrltower plan")
            )
    lines.append(f"ctrltower plan: {_summary(plan)}")
    return "\n".join(lines) + "\n"
