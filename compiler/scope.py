"""The scope rule: which groups a change can affect, and the subset of files to compile for them.

The one place that decides what a change touches (the reconciler's plan only reads Git and asks
here). Pure functions over {path: bytes} maps (the loader does the parsing). `scope_of` says which
groups a change can affect and why; `relevant_files` and `compile_scoped` compile only the files
those groups and names depend on. Which paths are repo files at all is `compiler.repo.is_repo_file`.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass

from compiler.api import CompileResult, compile_repo, load_repo
from compiler.repo import ROLLOUT_DIR, SETTINGS_FILES, is_repo_file

__all__ = [
    "NAME",
    "SETTINGS_FILES",
    "Scope",
    "compile_scoped",
    "is_repo_file",
    "relevant_files",
    "scope_of",
]


@dataclass(frozen=True)
class Scope:
    groups: frozenset[str]
    reasons: dict[str, tuple[str, ...]]  # group -> why it is in scope
    widened: tuple[str, ...]  # repo-wide inputs that widened the scope, said in words
    file_groups: dict[str, tuple[str, ...]]  # changed path -> groups it touches
    pipelines: frozenset[str] = frozenset()  # names of the pipelines in changed files (both sides)


def scope_of(
    base_files: Mapping[str, bytes], head_files: Mapping[str, bytes], changed: Collection[str]
) -> Scope:
    """Which groups the change can affect, and why, parsing only the changed files and group files.

    ctrltower.yaml -> every group. A group file -> the groups it defines (base and head). A pipeline
    file -> the groups its pipeline names (base and head). A rollouts/ file -> no group. A changed
    file that does not load on either side names nothing we can trust -> every group.
    """
    # a rollouts/ policy renders nothing: it decides how a change is rolled out, not what it is
    relevant = sorted(p for p in changed if is_repo_file(p) and not p.startswith(ROLLOUT_DIR))
    old = load_repo({p: base_files[p] for p in relevant if p in base_files})
    new = load_repo({p: head_files[p] for p in relevant if p in head_files})
    every: list[set[str]] = []

    def everyone() -> set[str]:
        """Every group of both sides; loads the group files only when the scope must widen."""
        if not every:
            names: set[str] = set()
            for files in (base_files, head_files):
                loaded = load_repo({p: d for p, d in files.items() if p.startswith("groups/")})
                names |= set(loaded.groups) | loaded.broken_groups
            every.append(names)
        return every[0]

    reasons: dict[str, list[str]] = {}
    file_groups: dict[str, set[str]] = {}
    widened: list[str] = []
    pipeline_names: set[str] = set()

    def add(path: str, groups: Collection[str], why: str) -> None:
        for g in groups:
            reasons.setdefault(g, [])
            if why not in reasons[g]:
                reasons[g].append(why)
        file_groups.setdefault(path, set()).update(groups)

    for path in relevant:
        if path in SETTINGS_FILES:
            widened.append(f"{path} changed: it applies to every group")
            add(path, everyone(), f"{path} changed")
            continue
        for label, repo, files in (("base", old, base_files), ("head", new, head_files)):
            if path not in files:
                continue
            if path.startswith("groups/"):
                names = set(repo.file_groups.get(path, ()))
                if names:
                    widened.append(f"{path} changed: group {', '.join(sorted(names))} re-rendered in full")
                    add(path, names, f"{path} changed (the group's definition)")
                    continue
            pipelines = repo.file_pipelines.get(path, ())
            pipeline_names.update(pipelines)
            loaded = [repo.pipelines.get(n) for n in pipelines]
            if not pipelines or any(lp is None for lp in loaded):
                widened.append(f"{path} does not load at {label}: every group is re-rendered")
                add(path, everyone(), f"{path} does not load at {label}")
                continue
            for name, lp in zip(pipelines, loaded, strict=True):
                assert lp is not None  # checked above
                add(path, lp.model.groups, f"pipeline {name} ({path}) changed")
    return Scope(
        groups=frozenset(reasons),
        reasons={g: tuple(r) for g, r in reasons.items()},
        widened=tuple(dict.fromkeys(widened)),
        file_groups={p: tuple(sorted(g)) for p, g in file_groups.items()},
        pipelines=frozenset(pipeline_names),
    )


def relevant_files(
    files: Mapping[str, bytes], needles: Collection[str], changed: Collection[str]
) -> dict[str, bytes]:
    """The subset of the repo a scoped plan compiles: settings, the changed files, and every group
    or pipeline file whose text mentions a scoped group or a changed pipeline's name.

    Sound as a superset: a group or pipeline name (`[a-z0-9-]+`) can only be spelled in YAML without
    its literal characters through an escape (a backslash) or a tag (`!`), and files holding either
    are always included. So every pipeline of a scoped group is compiled (its render is complete),
    and so is every file that could clash with a changed pipeline's or group's name. Files left out
    are unchanged and in no scoped group: their diagnostics are the base's.
    """
    mark = _marker(needles)
    return {
        path: data
        for path, data in files.items()
        if is_repo_file(path) and (path in SETTINGS_FILES or path in changed or mark.search(data))
    }


# A name ([a-z0-9-]+) written as a whole YAML scalar is never directly next to a character that
# could continue it: "edges:" does not mention the group "edge".
NAME = re.compile(r"^[a-z0-9][a-z0-9-]*$")
_NOT_NAME_CHAR = b"[^A-Za-z0-9_.-]"


def _mark_patterns(names: Collection[str]) -> list[bytes]:
    """Regexes (for re.MULTILINE) matching a line that may spell one of `names`, or that holds an
    escape or a tag (either can spell anything). Strings that are not valid names cannot name a
    group or pipeline, and are skipped."""
    bounded = [
        b"(^|" + _NOT_NAME_CHAR + b")" + n.encode() + b"(" + _NOT_NAME_CHAR + b"|$)"
        for n in sorted(names)
        if NAME.match(n)
    ]
    return [b"[\\\\]", b"!", *bounded]


class _Marker:
    """`search(data)`: does `data` hold a line that may spell one of the names (see _mark_patterns)?

    Every alternative of the regex needs one literal (a name, a backslash or `!`) in the text, so
    text holding none of them cannot match: a substring test rules most files out at a fraction of
    the regex's cost (which tries every position), and the answer is the regex's own.
    """

    def __init__(self, names: Collection[str]) -> None:
        self._regex = re.compile(b"|".join(_mark_patterns(names)), re.MULTILINE)
        self._literals = [b"\\", b"!", *(n.encode() for n in sorted(names) if NAME.match(n))]

    def search(self, data: bytes) -> bool:
        return any(lit in data for lit in self._literals) and self._regex.search(data) is not None


def _marker(names: Collection[str]) -> _Marker:
    return _Marker(names)


def compile_scoped(
    files: Mapping[str, bytes], needles: Collection[str], changed: Collection[str], groups: list[str]
) -> tuple[dict[str, bytes], CompileResult]:
    """Compile the relevant subset; add the group files its pipelines name (so an existing group
    never looks undefined) and compile again; bounded: the second round adds every one of them."""
    subset = relevant_files(files, needles, changed)
    result = compile_repo(subset, only_groups=groups)
    for _ in range(2):
        named = {g for p in result.pipelines for g in p.groups}
        named |= {g for r in result.rollouts for g in r.groups}  # a policy's groups must be defined too
        defined = {g for names in result.file_groups.values() for g in names}
        missing = named - defined
        if not missing:
            break
        mark = _marker(missing)
        extra = {
            p: d for p, d in files.items() if p.startswith("groups/") and p not in subset and mark.search(d)
        }
        if not extra:
            break
        subset.update(extra)
        result = compile_repo(subset, only_groups=groups)
    return subset, result
