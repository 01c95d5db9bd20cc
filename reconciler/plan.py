"""`plan`: what a change between two commits does to each group, as data.

A plan is a frozen `Plan` holding one `GroupChange` action per group the change touches; the
renderers in `reconciler/explain.py` turn the same object into text, Markdown, JSON or GitHub
annotations. Only the work the change needs is done: files changed between base and head (by blob
SHA) -> pipelines -> groups; a repo-wide input (ctrltower.yaml, a group file, a file that does not
parse) widens the scope, and the plan says why. Head is always validated in full.
"""

from __future__ import annotations

import difflib
import time
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

from compiler.api import CompileResult, compile_repo
from compiler.scope import NAME, SETTINGS_FILES, compile_scoped, is_repo_file, scope_of
from reconciler.git import GitRepo, changed_paths
from schemas.diagnostics import Diagnostic, has_errors, sort_diagnostics

ChangeKind = Literal["create", "update", "delete", "no-op"]
FileStatus = Literal["added", "modified", "deleted"]


@dataclass(frozen=True)
class FileChange:
    """One changed file of the config repo (path relative to the repo root, subdir included)."""

    path: str
    status: FileStatus
    groups: tuple[str, ...]  # groups whose rendered config may change because of this file
    lines: tuple[tuple[int, int], ...] = ()  # changed line ranges in head, 1-based inclusive


@dataclass(frozen=True)
class GroupChange:
    """The action a plan proposes for one group: its rendered config before and after."""

    group: str
    kind: ChangeKind
    reasons: tuple[str, ...]
    old_hash: str | None
    new_hash: str | None
    diff: str  # unified diff of the rendered configs ('' when identical)
    pipelines_added: tuple[str, ...] = ()
    pipelines_removed: tuple[str, ...] = ()
    pipelines_changed: tuple[str, ...] = ()
    agents: int | None = None  # live agents in the group (plan --server)

    @property
    def changes_config(self) -> bool:
        return self.kind != "no-op"


@dataclass(frozen=True)
class RolloutSteps:
    """How head's rollout policy takes a change to the groups it covers (docs/rollouts.md)."""

    policy: str
    groups: tuple[str, ...]  # the covered groups whose config this change modifies
    steps: tuple[str, ...]  # each step in words ("group edge-canary", "50 % of each group", ...)
    on_failure: str


@dataclass(frozen=True)
class Plan:
    base: str
    head: str
    subdir: str
    files: tuple[FileChange, ...]
    widened: tuple[str, ...]  # why the scope grew beyond the changed pipelines' groups
    changes: tuple[GroupChange, ...]  # every group in scope, sorted by name
    diagnostics: tuple[Diagnostic, ...]  # of head, every one, sorted by location
    pipelines_added: tuple[str, ...] = ()
    pipelines_removed: tuple[str, ...] = ()
    pipelines_changed: tuple[str, ...] = ()
    base_diagnostics: int = 0  # errors in base (its configs then count as absent)
    rollouts: tuple[RolloutSteps, ...] = ()  # changed groups under a rollout policy; others: at once
    validated_files: int = 0  # head repo files compiled
    repo_files: int = 0  # head repo files in total (validated_files < repo_files: incremental)
    timings_s: dict[str, float] = field(default_factory=dict, compare=False)

    @property
    def valid(self) -> bool:
        return not has_errors(list(self.diagnostics))

    @property
    def has_changes(self) -> bool:
        return any(c.changes_config for c in self.changes)

    def repo_path(self, path: str) -> str:
        return f"{self.subdir}/{path}" if self.subdir else path


def build_plan(
    repo: GitRepo,
    base_ref: str,
    head_ref: str,
    *,
    subdir: str = "",
    agents_per_group: Mapping[str, int] | None = None,
    full: bool = False,
) -> Plan:
    """Resolve both refs, compile only what the change needs, and return the plan."""
    subdir = subdir.strip("/")
    t0 = time.perf_counter()
    base_sha, head_sha = repo.resolve_many([base_ref, head_ref])
    head_list = repo.list_files(head_sha, subdir)
    base_list = repo.list_files(base_sha, subdir)  # re-reads only the trees head does not share
    changed = changed_paths(base_list, head_list)
    # symlinks and files over the size limit are never read: head's are errors of the plan, base's
    # make base count as invalid (its configs then count as absent)
    head_refused = repo.refusals(head_sha, head_list, subdir)
    base_refused = repo.refusals(base_sha, base_list, subdir)
    base_read, head_read = repo.readable(base_list), repo.readable(head_list)  # {} past CT114
    if full:
        repo.prefetch([*base_read.values(), *head_read.values()])
        base_files, head_files = repo.read_blobs(base_read), repo.read_blobs(head_read)
    else:
        base_files, head_files = _read_relevant(
            repo, base_sha, head_sha, base_read, head_read, changed, subdir
        )
    git_s = time.perf_counter() - t0
    plan = plan_files(
        base_files,
        head_files,
        changed,
        base=base_sha,
        head=head_sha,
        subdir=subdir,
        agents_per_group=agents_per_group,
        full=full,
        head_refused=head_refused,
        base_refused=sum(1 for d in base_refused if d.severity == "error"),
    )
    plan.timings_s["git"] = round(git_s, 6)
    return replace(plan, repo_files=sum(1 for p in head_list if is_repo_file(p)))


def _read_relevant(
    repo: GitRepo,
    base_sha: str,
    head_sha: str,
    base_list: Mapping[str, str],
    head_list: Mapping[str, str],
    changed: Collection[str],
    subdir: str,
) -> tuple[dict[str, bytes], dict[str, bytes]]:
    """Read only what a scoped plan compiles: the changed files, the settings and group files (for
    the scope), then the files `git grep` finds mentioning a scoped name (see relevant_files).

    One grep, over head only: a file unchanged between the commits (same blob) matches on both
    sides or on neither, and every changed file is read on both sides anyway.
    """

    def first(listing: Mapping[str, str]) -> dict[str, str]:
        return {
            p: sha
            for p, sha in listing.items()
            if p in changed or p in SETTINGS_FILES or (p.startswith("groups/") and is_repo_file(p))
        }

    base_first, head_first = first(base_list), first(head_list)
    repo.prefetch([*base_first.values(), *head_first.values()])
    base_files, head_files = repo.read_blobs(base_first), repo.read_blobs(head_first)
    scope = scope_of(base_files, head_files, changed)
    # git grep finds a superset fast (fixed strings); relevant_files narrows it with word bounds
    needles = ["\\", "!", *sorted(n for n in (*scope.groups, *scope.pipelines) if NAME.match(n))]
    hits = repo.grep_paths([head_sha], needles, subdir, skip=repo.oversized(head_list))[head_sha]
    head_hits = {p: head_list[p] for p in hits if is_repo_file(p) and p in head_list}
    base_hits = {p: sha for p, sha in head_hits.items() if base_list.get(p) == sha}
    repo.prefetch([*base_hits.values(), *head_hits.values()])
    base_files.update(repo.read_blobs(base_hits))
    head_files.update(repo.read_blobs(head_hits))
    return base_files, head_files


def plan_files(
    base_files: Mapping[str, bytes],
    head_files: Mapping[str, bytes],
    changed: Collection[str],
    *,
    base: str = "base",
    head: str = "head",
    subdir: str = "",
    agents_per_group: Mapping[str, int] | None = None,
    full: bool = False,
    head_refused: Sequence[Diagnostic] = (),
    base_refused: int = 0,
) -> Plan:
    """The pure core of plan: two file maps and the changed paths in, a Plan out.

    By default only the files the change can affect are compiled (see `relevant_files`); `full`
    compiles every file of both sides (slower, and it also reports problems the change did not
    cause).
    """
    t0 = time.perf_counter()
    changed_set = set(changed)
    scope = scope_of(base_files, head_files, changed_set)
    groups = sorted(scope.groups)
    t1 = time.perf_counter()
    if full:
        head_in, base_in = dict(head_files), dict(base_files)
        head_result = compile_repo(head_in, only_groups=groups)
        base_result = compile_repo(base_in, only_groups=groups)
    else:
        needles = [*scope.groups, *scope.pipelines]
        head_in, head_result = compile_scoped(head_files, needles, changed_set, groups)
        base_in, base_result = compile_scoped(base_files, needles, changed_set, groups)
    t2 = time.perf_counter()
    base_errors = base_refused + sum(1 for d in base_result.diagnostics if d.severity == "error")
    head_diags = list(head_result.diagnostics)
    if not full:
        # Group files of out-of-scope groups were compiled without their pipelines: what the
        # compiler says about them here (e.g. "no pipelines") is an artefact of the subset.
        outside = {
            path for path, names in head_result.file_groups.items() if not set(names) & scope.groups
        } - changed_set
        head_diags = [d for d in head_diags if d.location.file not in outside]
    diagnostics = tuple(sort_diagnostics([*head_diags, *head_refused]))
    base_pipes = _pipeline_files(base_result)
    head_pipes = _pipeline_files(head_result)
    p_added = tuple(sorted(set(head_pipes) - set(base_pipes)))
    p_removed = tuple(sorted(set(base_pipes) - set(head_pipes)))
    p_changed = tuple(
        sorted(
            n
            for n in set(head_pipes) & set(base_pipes)
            if head_pipes[n] in changed_set or base_pipes[n] in changed_set or head_pipes[n] != base_pipes[n]
        )
    )

    changes: list[GroupChange] = []
    if head_result.ok and not has_errors(list(head_refused)):
        base_members = _members(base_result) if base_errors == 0 else {}
        head_members = _members(head_result)
        for name in groups:
            old = base_result.configs.get(name) if base_errors == 0 else None
            new = head_result.configs.get(name)
            if old is None and new is None:
                continue
            before, after = base_members.get(name, ()), head_members.get(name, ())
            changes.append(
                GroupChange(
                    group=name,
                    kind=_kind(old, new),
                    reasons=tuple(scope.reasons.get(name, ())),
                    old_hash=_hash_of(base_result, name) if old is not None else None,
                    new_hash=_hash_of(head_result, name) if new is not None else None,
                    diff=_unified(name, old, new, base, head),
                    pipelines_added=tuple(sorted(set(after) - set(before))),
                    pipelines_removed=tuple(sorted(set(before) - set(after))),
                    pipelines_changed=tuple(sorted(set(before) & set(after) & set(p_changed))),
                    agents=None if agents_per_group is None else agents_per_group.get(name, 0),
                )
            )

    rollouts = _rollouts(head_result, changes)
    files = tuple(
        FileChange(
            path=f"{subdir}/{p}" if subdir else p,
            status=_status(p, base_files, head_files),
            groups=tuple(sorted(scope.file_groups.get(p, ()))),
            lines=_changed_lines(base_files.get(p), head_files.get(p)),
        )
        for p in sorted(changed_set)
    )
    return Plan(
        base=base,
        head=head,
        subdir=subdir,
        files=files,
        widened=tuple(scope.widened),
        changes=tuple(changes),
        diagnostics=diagnostics,
        pipelines_added=p_added,
        pipelines_removed=p_removed,
        pipelines_changed=p_changed,
        base_diagnostics=base_errors,
        rollouts=rollouts,
        validated_files=sum(1 for p in head_in if is_repo_file(p)),
        repo_files=sum(1 for p in head_files if is_repo_file(p)),
        timings_s={"scope": round(t1 - t0, 6), "compile": round(t2 - t1, 6)},
    )


def _rollouts(head: CompileResult, changes: list[GroupChange]) -> tuple[RolloutSteps, ...]:
    changed = {c.group for c in changes if c.changes_config}
    out = []
    for policy in head.rollouts:
        covered = tuple(g for g in policy.groups if g in changed)
        if covered:
            out.append(
                RolloutSteps(
                    policy=policy.name,
                    groups=covered,
                    steps=(*(step.describe() for step in policy.steps), "done: every agent of the groups"),
                    on_failure=policy.on_failure,
                )
            )
    return tuple(out)


def _pipeline_files(result: CompileResult) -> dict[str, str]:
    """pipeline name -> source path."""
    return {name: path for path, names in result.file_pipelines.items() for name in names}


def _members(result: CompileResult) -> dict[str, tuple[str, ...]]:
    return {g.name: tuple(g.pipelines) for g in result.groups}


def _hash_of(result: CompileResult, group: str) -> str | None:
    return next((g.config_hash for g in result.groups if g.name == group), None)


def _kind(old: str | None, new: str | None) -> ChangeKind:
    if old is None:
        return "create"
    if new is None:
        return "delete"
    return "no-op" if old == new else "update"


def _status(path: str, base: Mapping[str, bytes], head: Mapping[str, bytes]) -> FileStatus:
    if path not in base:
        return "added"
    if path not in head:
        return "deleted"
    return "modified"


def _unified(group: str, old: str | None, new: str | None, base: str, head: str) -> str:
    if old == new:
        return ""
    return "".join(
        difflib.unified_diff(
            (old or "").splitlines(keepends=True),
            (new or "").splitlines(keepends=True),
            fromfile=f"a/{group}.yaml" if old is not None else "/dev/null",
            tofile=f"b/{group}.yaml" if new is not None else "/dev/null",
        )
    )


def _changed_lines(old: bytes | None, new: bytes | None) -> tuple[tuple[int, int], ...]:
    """Line ranges of head that differ from base (for annotations); a deleted file has none."""
    if new is None:
        return ()
    new_lines = new.decode("utf-8", errors="replace").splitlines()
    if old is None:
        return ((1, max(len(new_lines), 1)),)
    old_lines = old.decode("utf-8", errors="replace").splitlines()
    ranges: list[tuple[int, int]] = []
    matcher = difflib.SequenceMatcher(a=old_lines, b=new_lines, autojunk=False)
    for tag, _i1, _i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            continue
        if j2 > j1:
            ranges.append((j1 + 1, j2))
        else:  # pure deletion: point at the line after it
            line = min(j1 + 1, max(len(new_lines), 1))
            ranges.append((line, line))
    return tuple(ranges)
