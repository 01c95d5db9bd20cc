"""The compiler's public entry points (pure: files in, configs and diagnostics out).

Owned by the compiler; reconciler and webui import from here (`from compiler.api import ...`), and
the reconciler's plan asks `compiler.scope` which groups a change can affect.

- `compile_repo(files, only_groups=None) -> CompileResult`: validate everything, render groups.
- `load_repo(files) -> LoadedRepo`: parse only (cheap): models, positions, load/schema diagnostics,
  `file_pipelines` / `file_groups` (path -> names) and `group_pipelines(group)`.
- `validate_repo(files)`: the diagnostics of compile_repo (every group rendered, templates checked).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field

from compiler.catalog import Catalog
from compiler.graph import PipelinePlan, check_pipeline
from compiler.render import render_group
from compiler.repo import LoadedPipeline, LoadedRepo, load_repo
from compiler.template import Templater
from schemas.api import GroupRevision, PipelineEdgeView, PipelineGraph, PipelineNodeView
from schemas.common import config_hash
from schemas.diagnostics import Diagnostic, Location, has_errors, sort_diagnostics

__all__ = [
    "CompileResult",
    "LoadedRepo",
    "compile_repo",
    "load_repo",
    "validate_repo",
]


@dataclass(frozen=True)
class CompileResult:
    diagnostics: list[Diagnostic]
    configs: dict[str, str] = field(default_factory=dict)  # group name -> rendered YAML
    groups: list[GroupRevision] = field(default_factory=list)
    pipelines: list[PipelineGraph] = field(default_factory=list)
    file_pipelines: dict[str, list[str]] = field(default_factory=dict)  # repo path -> pipeline names
    file_groups: dict[str, list[str]] = field(default_factory=dict)  # repo path -> group names
    # The parsed repo the result came from (positions included), so callers need not parse it again.
    repo: LoadedRepo | None = field(default=None, compare=False, repr=False)

    @property
    def ok(self) -> bool:
        return not has_errors(self.diagnostics)


def _graph_view(lp: LoadedPipeline, plan: PipelinePlan | None) -> PipelineGraph:
    p = lp.model
    if plan is not None:
        edges = [
            PipelineEdgeView.model_validate({"from": a, "to": b, "signals": list(sigs)})
            for a, b, sigs in plan.edge_signals
        ]
    else:
        edges = [
            PipelineEdgeView.model_validate(
                {"from": e.from_, "to": e.to, "signals": e.signals if e.signals is not None else p.signals}
            )
            for e in p.edges
        ]
    return PipelineGraph(
        name=p.name,
        file=lp.file,
        groups=list(p.groups),
        signals=list(p.signals),
        nodes=[
            PipelineNodeView.model_validate(
                {"id": n.id, "class": n.class_, "type": n.type, "config": n.config}
            )
            for n in p.nodes
        ],
        edges=edges,
    )


def compile_repo(
    files: Mapping[str, bytes | str],
    *,
    only_groups: Collection[str] | None = None,
    catalog: Catalog | None = None,
) -> CompileResult:
    """Validate the repo given as {relative path: content} and render every group (or only_groups).

    Every diagnostic is returned, sorted by location. Groups are rendered only when the repo has no
    load, schema or graph error (so a broken repo never yields a partial fleet); template errors are
    found while rendering and then leave `configs` empty too. With only_groups, templates are checked
    only for those groups.
    """
    repo = load_repo(files, catalog=catalog)
    diags = list(repo.diagnostics)
    plans: dict[str, PipelinePlan] = {}
    graphs: list[PipelineGraph] = []
    for name in sorted(repo.pipelines):
        lp = repo.pipelines[name]
        result = check_pipeline(lp, repo.catalog)
        diags.extend(result.diagnostics)
        if result.plan is not None:
            plans[name] = result.plan
        graphs.append(_graph_view(lp, result.plan))
        for k, group in enumerate(lp.model.groups):
            if group not in repo.groups and group not in repo.broken_groups:
                pos = lp.positions.value(("groups", k))
                close = sorted(repo.groups)
                diags.append(
                    Diagnostic(
                        code="CT211",
                        message=f"pipeline '{name}' names group '{group}', which no groups/ file defines",
                        hint=f"defined groups: {', '.join(close)}" if close else "add groups/<name>.yaml",
                        location=Location(
                            file=lp.file, line=pos[0], column=pos[1], pipeline=name, key_path=f"groups.{k}"
                        ),
                    )
                )
    for gname in sorted(repo.groups):
        lg = repo.groups[gname]
        for ext_id in lg.model.extensions:
            ext_type = ext_id.split("/", 1)[0]
            if repo.catalog.lookup("extension", ext_type) is None:
                line, col = lg.positions.key(("extensions", ext_id))
                close = repo.catalog.suggest("extension", ext_type)
                diags.append(
                    Diagnostic(
                        code="CT301",
                        message=f"unknown extension type '{ext_type}' (group '{gname}')",
                        hint=f"did you mean {' or '.join(repr(c) for c in close)}?"
                        if close
                        else "declare it in ctrltower.yaml under components: (class: extension)",
                        location=Location(
                            file=lg.file, line=line, column=col, key_path=f"extensions.{ext_id}"
                        ),
                    )
                )
        if not repo.group_pipelines(gname):
            lg = repo.groups[gname]
            pos = lg.positions.value(("name",))
            diags.append(
                Diagnostic(
                    code="CT213",
                    severity="warning",
                    message=f"group '{gname}' has no pipelines: its collector config would do nothing",
                    location=Location(file=lg.file, line=pos[0], column=pos[1]),
                )
            )

    configs: dict[str, str] = {}
    revisions: list[GroupRevision] = []
    if not has_errors(diags):
        templater = Templater()
        wanted = sorted(repo.groups) if only_groups is None else sorted(set(only_groups) & set(repo.groups))
        for gname in wanted:
            lg = repo.groups[gname]
            names = repo.group_pipelines(gname)
            rendered = render_group(
                lg, [(repo.pipelines[n], plans[n]) for n in names], repo.settings.telemetry, templater
            )
            diags.extend(rendered.diagnostics)
            configs[gname] = rendered.config
            revisions.append(
                GroupRevision(
                    name=gname,
                    selector=dict(lg.model.selector),
                    priority=lg.model.priority,
                    config=rendered.config,
                    config_hash=config_hash(rendered.config),
                    pipelines=names,
                )
            )
        if has_errors(diags):
            configs, revisions = {}, []
    return CompileResult(
        diagnostics=sort_diagnostics(diags),
        configs=configs,
        groups=revisions,
        pipelines=graphs,
        file_pipelines={k: sorted(v) for k, v in sorted(repo.file_pipelines.items())},
        file_groups={k: sorted(v) for k, v in sorted(repo.file_groups.items())},
        repo=repo,
    )


def validate_repo(files: Mapping[str, bytes | str]) -> list[Diagnostic]:
    return compile_repo(files).diagnostics
