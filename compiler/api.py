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
from compiler.graph import PipelinePlan, check_pipeline, graph_view
from compiler.refs import check_references
from compiler.render import config_size_problem, render_group
from compiler.repo import LoadedRepo, load_repo
from compiler.rollouts import check_rollouts
from compiler.template import Templater
from schemas.api import GroupRevision, PipelineGraph
from schemas.common import config_hash
from schemas.diagnostics import Diagnostic, has_errors, sort_diagnostics
from schemas.repo import RolloutPolicy

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
    rollouts: list[RolloutPolicy] = field(default_factory=list)  # every policy that loaded, by name
    # The parsed repo the result came from (positions included), so callers need not parse it again.
    repo: LoadedRepo | None = field(default=None, compare=False, repr=False)

    @property
    def ok(self) -> bool:
        return not has_errors(self.diagnostics)


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
        result = check_pipeline(lp, repo.catalog, repo.settings.unstable_signals)
        diags.extend(result.diagnostics)
        if result.plan is not None:
            plans[name] = result.plan
        graphs.append(graph_view(lp, result.plan))
    diags.extend(check_references(repo))
    diags.extend(check_rollouts(repo))

    configs: dict[str, str] = {}
    revisions: list[GroupRevision] = []
    if not has_errors(diags):
        templater = Templater()
        wanted = sorted(repo.groups) if only_groups is None else sorted(set(only_groups) & set(repo.groups))
        rendered_chars = 0
        for gname in wanted:
            lg = repo.groups[gname]
            names = repo.group_pipelines(gname)
            rendered = render_group(
                lg, [(repo.pipelines[n], plans[n]) for n in names], repo.settings.telemetry, templater
            )
            diags.extend(rendered.diagnostics)
            rendered_chars += len(rendered.config)
            too_big = config_size_problem(lg, len(rendered.config), rendered_chars)
            if too_big is not None:
                diags.append(too_big)
                break
            configs[gname] = rendered.config
            revisions.append(
                GroupRevision(
                    name=gname,
                    selector=dict(lg.model.selector),
                    priority=lg.model.priority,
                    config=rendered.config,
                    config_hash=config_hash(rendered.config),
                    pipelines=names,
                    collector_version=lg.model.collector.version if lg.model.collector else None,
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
        rollouts=[repo.rollouts[n].model for n in sorted(repo.rollouts)],
        repo=repo,
    )


def validate_repo(files: Mapping[str, bytes | str]) -> list[Diagnostic]:
    return compile_repo(files).diagnostics
