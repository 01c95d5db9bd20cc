"""Render one agent group's collector config from the plans of its pipelines.

Layout (deterministic, whatever the file order): receivers, processors, exporters, connectors,
extensions, then service (extensions, telemetry, pipelines); component ids and pipeline names sorted;
a component's own config keeps the key order it was written in (that is what the reviewer read).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from compiler.graph import PipelinePlan, component_name
from compiler.loader import diagnostic, dump_yaml
from compiler.naming import dotted, model_doc, where
from compiler.repo import LoadedGroup, LoadedPipeline
from compiler.routes import is_router, rewrite_routes
from compiler.template import TemplateProblem, Templater
from schemas.diagnostics import Diagnostic
from schemas.repo import COLLECTOR_LINE_PREFIX, TelemetrySettings

SECTIONS = {
    "receiver": "receivers",
    "processor": "processors",
    "exporter": "exporters",
    "connector": "connectors",
}
TELEMETRY_PORT_ENV = "CTRLTOWER_TELEMETRY_PORT"
# A collector config is kilobytes. These stop a repo whose pipelines are each within the file and
# alias limits but add up (a large pipeline named by hundreds of groups) before the configs fill memory.
MAX_CONFIG_CHARS = 16 * 1024 * 1024  # one group's rendered config
MAX_TOTAL_CONFIG_CHARS = 256 * 1024 * 1024  # every group's together, in one compile


@dataclass(frozen=True)
class RenderedGroup:
    name: str
    config: str
    diagnostics: list[Diagnostic]


def telemetry_block(settings: TelemetrySettings) -> dict[str, Any]:
    """service.telemetry: the collector's own metrics, pull-served on loopback at a port the agent sets."""
    return {
        "metrics": {
            "readers": [
                {
                    "pull": {
                        "exporter": {
                            "prometheus": {
                                "host": settings.metrics_host,
                                "port": f"${{env:{TELEMETRY_PORT_ENV}:-{settings.metrics_port}}}",
                            }
                        }
                    }
                }
            ]
        }
    }


def _template_diagnostics(
    problems: list[TemplateProblem],
    source: LoadedGroup | LoadedPipeline,
    what: str,
    group: str,
    vars_hint: str | None,
    *,
    pipeline: str | None = None,
    node: str | None = None,
) -> list[Diagnostic]:
    """Template problems found while rendering `group`, placed at the value's line in `source` and
    named by what the file calls it: `node 'tail': config.include[0]: ...` (never a list index)."""
    if not problems:
        return []
    doc = model_doc(source.model)
    out = []
    for prob in problems:
        # what: "node 'x'" (path nodes/<i>/...) or "extension 'y'" (path extensions/<id>/...)
        w = where(doc, prob.path)
        field = w.field() if w.subject else dotted(prob.path[2:])
        out.append(
            diagnostic(
                source,
                prob.path,
                prob.code,
                f"{what}: {field + ': ' if field else ''}{prob.message} (group '{group}')",
                hint=vars_hint if prob.code == "CT402" else None,
                key_path=w.key_path,
                pipeline=pipeline,
                node=node,
                group=group,
            )
        )
    return out


def _routed(routed: dict[tuple[str, str], list[str]], router: str, target: str) -> list[str]:
    return routed.get((router, target), [])


def config_size_problem(group: LoadedGroup, size: int, total: int) -> Diagnostic | None:
    """CT214 when a rendered config, or all of them so far, is over its limit (the caller stops
    rendering: the commit has failed, and more configs would only cost memory)."""
    if size <= MAX_CONFIG_CHARS and total <= MAX_TOTAL_CONFIG_CHARS:
        return None
    name = group.model.name
    what = (
        f"the rendered config of group '{name}' is {size:,} characters (limit {MAX_CONFIG_CHARS:,})"
        if size > MAX_CONFIG_CHARS
        else f"the rendered configs of the groups up to '{name}' add up to more than "
        f"{MAX_TOTAL_CONFIG_CHARS:,} characters"
    )
    hint = "a collector config is kilobytes: look for large values repeated in many places"
    return diagnostic(group, ("name",), "CT214", what, hint=hint)


def render_group(
    group: LoadedGroup,
    pipelines: list[tuple[LoadedPipeline, PipelinePlan]],
    telemetry: TelemetrySettings,
    templater: Templater,
) -> RenderedGroup:
    g = group.model
    templater.start_budget()  # the step and output budget is per group
    context: dict[str, Any] = {
        "vars": g.vars,
        "group": {"name": g.name, "selector": dict(g.selector), "priority": g.priority},
    }
    vars_hint = (
        f"group '{g.name}' defines vars: {', '.join(sorted(map(str, g.vars)))}"
        if g.vars
        else f"group '{g.name}' defines no vars"
    ) + "; templates also see group.name, group.selector, group.priority and pipeline"
    sections: dict[str, dict[str, Any]] = {s: {} for s in SECTIONS.values()}
    service_pipelines: dict[str, dict[str, list[str]]] = {}
    diags: list[Diagnostic] = []
    for lp, plan in sorted(pipelines, key=lambda item: item[1].name):
        context["pipeline"] = plan.name
        ids = {nid: component_name(plan.name, node) for nid, node in plan.nodes.items()}
        routed = plan.routed_pipelines()  # routes name nodes in the repo, pipelines in the collector
        index = {node.id: i for i, node in enumerate(lp.model.nodes)}
        for nid, node in plan.nodes.items():
            problems: list[TemplateProblem] = []
            base: tuple[str | int, ...] = ("nodes", index[nid], "config")
            config = templater.render_value(node.config, context, base, problems)
            diags.extend(
                _template_diagnostics(
                    problems, lp, f"node '{nid}'", g.name, vars_hint, pipeline=plan.name, node=nid
                )
            )
            if node.class_ == "connector" and is_router(node.type):
                config = rewrite_routes(node.type, config, functools.partial(_routed, routed, nid))
            sections[SECTIONS[node.class_]][ids[nid]] = config if config is not None else {}
        for pname, cp in plan.collector_pipelines:
            service_pipelines[pname] = {
                "receivers": sorted(ids[n] for n in cp.receivers),
                "processors": [ids[n] for n in cp.processors],
                "exporters": sorted(ids[n] for n in cp.exporters),
            }

    doc: dict[str, Any] = {}
    for section in SECTIONS.values():
        if sections[section]:
            doc[section] = {k: sections[section][k] for k in sorted(sections[section])}
    service: dict[str, Any] = {}
    if g.extensions:
        context["pipeline"] = None
        extensions: dict[str, Any] = {}
        for ext_id, ext_config in sorted(g.extensions.items()):
            ext_problems: list[TemplateProblem] = []
            rendered_ext = templater.render_value(ext_config, context, ("extensions", ext_id), ext_problems)
            diags.extend(
                _template_diagnostics(ext_problems, group, f"extension '{ext_id}'", g.name, vars_hint)
            )
            extensions[ext_id] = rendered_ext if rendered_ext is not None else {}
        doc["extensions"] = extensions
        service["extensions"] = sorted(g.extensions)
    service["telemetry"] = telemetry_block(telemetry)
    service["pipelines"] = {k: service_pipelines[k] for k in sorted(service_pipelines)}
    doc["service"] = service
    header = f"# ctrltower: group {g.name}; rendered from the config repo, do not edit\n"
    if g.collector is not None:
        # In the bytes, so a version change is a config change: reviewed in the plan's diff, covered by
        # the signed sha256, and delivered past the agents' ETag (agents read it from this line).
        header += f"{COLLECTOR_LINE_PREFIX}{g.collector.version}\n"
    return RenderedGroup(g.name, header + dump_yaml(doc), diags)
