"""Reference checks across files: what a pipeline or group names must exist somewhere in the repo.

- CT211: a pipeline names a group no groups/ file defines.
- CT301: a group enables an extension type the catalog (and ctrltower.yaml) does not know.
- CT213 (warning): a group no pipeline names: its collector config would do nothing.

Graph checks inside one pipeline are compiler/graph.py's; these need the whole loaded repo.
"""

from __future__ import annotations

from compiler.loader import diagnostic
from compiler.repo import LoadedRepo
from schemas.diagnostics import Diagnostic


def check_references(repo: LoadedRepo) -> list[Diagnostic]:
    """Every dangling group name, unknown extension type and idle group of the repo."""
    return [*_pipeline_groups(repo), *_group_references(repo)]


def _pipeline_groups(repo: LoadedRepo) -> list[Diagnostic]:
    diags: list[Diagnostic] = []
    for name in sorted(repo.pipelines):
        lp = repo.pipelines[name]
        for k, group in enumerate(lp.model.groups):
            if group not in repo.groups and group not in repo.broken_groups:
                close = sorted(repo.groups)
                diags.append(
                    diagnostic(
                        lp,
                        ("groups", k),
                        "CT211",
                        f"pipeline '{name}' names group '{group}', which no groups/ file defines",
                        hint=f"defined groups: {', '.join(close)}" if close else "add groups/<name>.yaml",
                        key_path=f"groups[{group}]",
                        pipeline=name,
                    )
                )
    return diags


def _group_references(repo: LoadedRepo) -> list[Diagnostic]:
    diags: list[Diagnostic] = []
    for gname in sorted(repo.groups):
        lg = repo.groups[gname]
        for ext_id in lg.model.extensions:
            ext_type = ext_id.split("/", 1)[0]
            if repo.catalog.lookup("extension", ext_type) is None:
                close = repo.catalog.suggest("extension", ext_type)
                diags.append(
                    diagnostic(
                        lg,
                        ("extensions", ext_id),
                        "CT301",
                        f"unknown extension type '{ext_type}' (group '{gname}')",
                        hint=f"did you mean {' or '.join(repr(c) for c in close)}?"
                        if close
                        else "declare it in ctrltower.yaml under components: (class: extension)",
                        at_key=True,
                    )
                )
        if not repo.group_pipelines(gname):
            diags.append(
                diagnostic(
                    lg,
                    ("name",),
                    "CT213",
                    f"group '{gname}' has no pipelines: its collector config would do nothing",
                    severity="warning",
                )
            )
    return diags
