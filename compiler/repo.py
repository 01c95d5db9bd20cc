"""Load a config repo given as {relative path: content} into pydantic models with source positions.

Which files count: `ctrltower.yaml` (or .yml) at the root, `groups/**/*.yaml|yml`,
`pipelines/**/*.yaml|yml` and `rollouts/**/*.yaml|yml`. Everything else (README, CI files, schemas)
is ignored. The `kind` inside a file decides what it is; a kind in another kind's directory is a
warning (CT110).
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from compiler.catalog import Catalog, builtin_catalog
from compiler.loader import LoadError, Positions, Source, diagnostic, load_yaml
from compiler.naming import Where, model_doc, where
from schemas.diagnostics import Diagnostic
from schemas.repo import AgentGroup, Pipeline, RepoSettings, RolloutPolicy

M = TypeVar("M", bound=BaseModel)

SETTINGS_FILES = ("ctrltower.yaml", "ctrltower.yml")
KIND_DIRS = {"AgentGroup": "groups/", "Pipeline": "pipelines/", "RolloutPolicy": "rollouts/"}
ROLLOUT_DIR = KIND_DIRS["RolloutPolicy"]


@dataclass(frozen=True)
class LoadedGroup:
    model: AgentGroup
    file: str
    positions: Positions


@dataclass(frozen=True)
class LoadedPipeline:
    model: Pipeline
    file: str
    positions: Positions


@dataclass(frozen=True)
class LoadedRollout:
    model: RolloutPolicy
    file: str
    positions: Positions


@dataclass
class LoadedRepo:
    """The parsed repo: what compile_repo works from, and what a plan needs to map files to groups."""

    settings: RepoSettings
    catalog: Catalog
    groups: dict[str, LoadedGroup] = field(default_factory=dict)
    pipelines: dict[str, LoadedPipeline] = field(default_factory=dict)
    file_pipelines: dict[str, list[str]] = field(default_factory=dict)  # path -> pipeline names
    file_groups: dict[str, list[str]] = field(default_factory=dict)  # path -> group names
    rollouts: dict[str, LoadedRollout] = field(default_factory=dict)  # policy name -> policy
    diagnostics: list[Diagnostic] = field(default_factory=list)
    # names seen in files that failed schema validation (so they do not also raise "undefined")
    broken_groups: set[str] = field(default_factory=set)
    broken_pipelines: set[str] = field(default_factory=set)
    settings_file: str = SETTINGS_FILES[0]
    settings_positions: Positions = field(default_factory=Positions)
    _by_group: dict[str, list[str]] | None = field(default=None, repr=False)

    def group_pipelines(self, group: str) -> list[str]:
        """The pipelines naming group, sorted (an index built on first use: O(pipelines) once)."""
        if self._by_group is None:
            index: dict[str, list[str]] = {}
            for name in sorted(self.pipelines):
                for g in dict.fromkeys(self.pipelines[name].model.groups):
                    index.setdefault(g, []).append(name)
            self._by_group = index
        return list(self._by_group.get(group, []))


def is_repo_file(path: str) -> bool:
    if path in SETTINGS_FILES:
        return True
    return path.startswith(tuple(KIND_DIRS.values())) and path.endswith((".yaml", ".yml"))


def _inside(w: Where) -> str:
    """' in node 'tail'' / ' in telemetry' / ' in config of node 'tail'' ('' for the document)."""
    field = w.field()
    if w.subject and field:
        return f" in {field} of {w.subject}"
    return f" in {w.subject or field}" if (w.subject or field) else ""


def _defined_again(src: Source, code: str, what: str, first: str, pipeline: str | None = None) -> Diagnostic:
    """A name defined a second time (a group, pipeline or rollout policy): the error is at this file's
    `name` and says which file defined it first."""
    return diagnostic(src, ("name",), code, f"{what} is already defined in {first}", pipeline=pipeline)


def _validated(
    model: type[M], data: Any, file: str, positions: Positions, name: str | None, diags: list[Diagnostic]
) -> M | None:
    """`data` as a `model`, or None with its CT104 diagnostics added to `diags`."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        diags.extend(_schema_diagnostics(exc, model, file, positions, name, data))
        return None


def _schema_diagnostics(
    exc: ValidationError,
    model: type[BaseModel],
    file: str,
    positions: Positions,
    name: str | None,
    data: Any,
) -> list[Diagnostic]:
    """CT104 for each pydantic error, naming nodes, edges and groups by what the file calls them."""
    diags: list[Diagnostic] = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        kind = err["type"]
        hint = None
        if loc and loc[-1] == "[key]":
            loc = loc[:-1]
            pos = positions.key(loc)
            w = where(data, loc[:-1])
            message = f"keys{_inside(w) or ' in the document'} must be strings"
            hint = "unquoted true/false/null and numbers are not strings in YAML: quote the key"
        elif kind == "extra_forbidden":
            pos = positions.key(loc)
            w = where(data, loc[:-1])
            message = f"unknown field '{loc[-1]}'{_inside(w)}"
            fields = _fields_at(model, loc[:-1])
            close = difflib.get_close_matches(str(loc[-1]), fields, n=1)
            if close:
                hint = f"did you mean '{close[0]}'?"
        elif kind == "missing":
            pos = positions.value(loc[:-1])
            w = where(data, loc[:-1])
            message = f"missing required field '{loc[-1]}'{_inside(w)}"
        else:
            pos = positions.value(loc)
            w = where(data, loc)
            message = f"{w.prefix() or 'document: '}{err['msg']}"
        diags.append(
            diagnostic(
                Source(file, positions),
                loc,
                "CT104",
                message,
                hint=hint,
                pipeline=name,
                node=w.node,
                key_path=where(data, loc).key_path or "document",
                pos=pos,
            )
        )
    return diags


def _fields_at(model: type[BaseModel], loc: tuple[str | int, ...]) -> list[str]:
    """Field names (aliases) of the model found at loc, for did-you-mean on unknown fields."""
    current: Any = model
    for part in loc:
        if isinstance(part, int):
            continue
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return []
        fld = next(
            (f for n, f in current.model_fields.items() if (f.alias or n) == part),
            None,
        )
        if fld is None:
            return []
        ann = fld.annotation
        args = getattr(ann, "__args__", None)
        current = args[0] if args else ann
    if isinstance(current, type) and issubclass(current, BaseModel):
        return [f.alias or n for n, f in current.model_fields.items()]
    return []


def load_repo(files: Mapping[str, bytes | str], *, catalog: Catalog | None = None) -> LoadedRepo:
    """Parse every repo file into models, collecting load, schema and duplicate-name diagnostics.

    Cheap (no graph checks, no templating): the reconciler's plan can use `file_pipelines` and
    `file_groups` to map changed paths to groups (see compiler.scope.scope_of).
    """
    base = catalog or builtin_catalog()
    diags: list[Diagnostic] = []
    settings = RepoSettings()
    docs: list[tuple[str, Any, Positions]] = []
    for path in sorted(p for p in files if is_repo_file(p)):
        try:
            loaded, duplicates = load_yaml(files[path])
        except LoadError as err:
            diags.append(err.diagnostic(path))
            continue
        for key, pos in duplicates:
            diags.append(
                diagnostic(
                    Source(path), (), "CT106", f"duplicate key '{key}' (the last one would win)", pos=pos
                )
            )
        if loaded is None:
            diags.append(diagnostic(Source(path), (), "CT103", "file is empty"))
            continue
        if not isinstance(loaded.data, dict):
            diags.append(
                diagnostic(Source(path, loaded.positions), (), "CT103", "a repo file must be a YAML mapping")
            )
            continue
        docs.append((path, loaded.data, loaded.positions))

    repo = LoadedRepo(settings=settings, catalog=base)
    for path, data, positions in docs:
        src = Source(path, positions)
        if path in SETTINGS_FILES:
            repo.settings_file, repo.settings_positions = path, positions
            read = _validated(RepoSettings, data, path, positions, None, diags)
            if read is not None:
                repo.settings = read
            continue
        kind = data.get("kind") if isinstance(data.get("kind"), str) else None
        name = data.get("name") if isinstance(data.get("name"), str) else None
        if kind not in KIND_DIRS:
            known = ", ".join(KIND_DIRS)
            diags.append(
                diagnostic(
                    src if kind else Source(path),
                    ("kind",) if kind else (),
                    "CT105",
                    f"unknown kind {kind!r}: expected one of {known}" if kind else "missing 'kind'",
                    hint="a file under groups/ has kind: AgentGroup, under pipelines/ kind: Pipeline,"
                    " under rollouts/ kind: RolloutPolicy",
                )
            )
            continue
        if not path.startswith(KIND_DIRS[kind]):
            diags.append(
                diagnostic(
                    src,
                    ("kind",),
                    "CT110",
                    f"kind {kind} belongs under {KIND_DIRS[kind]}",
                    severity="warning",
                )
            )
        if kind == "AgentGroup":
            group = _validated(AgentGroup, data, path, positions, None, diags)
            if group is None:
                if name:
                    repo.broken_groups.add(name)
                continue
            if group.name in repo.groups:
                first = repo.groups[group.name].file
                diags.append(_defined_again(src, "CT111", f"group '{group.name}'", first))
                continue
            repo.groups[group.name] = LoadedGroup(group, path, positions)
            repo.file_groups.setdefault(path, []).append(group.name)
        elif kind == "RolloutPolicy":
            policy = _validated(RolloutPolicy, data, path, positions, None, diags)
            if policy is None:
                continue
            if policy.name in repo.rollouts:
                first = repo.rollouts[policy.name].file
                diags.append(_defined_again(src, "CT709", f"rollout policy '{policy.name}'", first))
                continue
            repo.rollouts[policy.name] = LoadedRollout(policy, path, positions)
        else:
            pipeline = _validated(Pipeline, data, path, positions, name, diags)
            if pipeline is None:
                if name:
                    repo.broken_pipelines.add(name)
                    repo.file_pipelines.setdefault(path, []).append(name)
                continue
            if pipeline.name in repo.pipelines:
                first = repo.pipelines[pipeline.name].file
                diags.append(
                    _defined_again(src, "CT112", f"pipeline '{pipeline.name}'", first, pipeline=pipeline.name)
                )
                continue
            repo.pipelines[pipeline.name] = LoadedPipeline(pipeline, path, positions)
            repo.file_pipelines.setdefault(path, []).append(pipeline.name)

    seen_types: set[tuple[str, str]] = set()
    for i, ct in enumerate(repo.settings.components):
        type_key = (str(ct.class_), ct.type)
        if type_key in seen_types:
            diags.append(
                diagnostic(
                    Source(repo.settings_file, repo.settings_positions),
                    ("components", i),
                    "CT113",
                    f"component type '{ct.type}' ({ct.class_}) is declared twice",
                    key_path=where(model_doc(repo.settings), ("components", i)).key_path,
                )
            )
        seen_types.add(type_key)
    repo.catalog = base.with_custom(repo.settings.components)
    repo.diagnostics = diags
    return repo
