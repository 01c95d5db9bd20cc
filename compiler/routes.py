"""Connectors whose config names collector pipelines (routing, failover): their routes as graph edges.

In a collector config a `routing` connector lists pipeline ids (`table[].pipelines`,
`default_pipelines`) and `failover` lists them by priority (`priority_levels`). ctrltower names the
collector pipelines itself, so in a repo a route names the node the connector's edge goes to (the first
processor of the routed chain, or the exporter it feeds directly). The graph check makes every route a
real edge out of the connector (CT312); rendering writes back the collector pipelines that hold those
edges; import turns pipeline ids into the nodes that head them.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from compiler.loader import Path
from schemas.repo import Node

ROUTERS = ("routing", "failover")


def is_router(type_: str) -> bool:
    return type_ in ROUTERS


@dataclass(frozen=True)
class RouteProblem:
    router: str  # node id
    path: Path  # inside the router's config
    message: str
    hint: str | None


def route_problems(nodes: Mapping[str, Node], edges: Collection[tuple[str, str]]) -> list[RouteProblem]:
    """Routes (of every routing/failover connector among nodes) that name no node the connector has
    an edge to: the graph check reports them as CT312."""
    out: list[RouteProblem] = []
    for nid, node in nodes.items():
        if node.class_ != "connector" or not is_router(node.type):
            continue
        targets = sorted({b for a, b in edges if a == nid})
        for path, target in route_targets(node.type, node.config):
            where = f"connector '{nid}' ({node.type}) routes to"
            if not isinstance(target, str) or target not in nodes:
                close = difflib.get_close_matches(str(target), targets, n=1)
                hint = (
                    f"did you mean '{close[0]}'?"
                    if close
                    else "a route names the node an edge of the connector goes to: "
                    + (", ".join(targets) or "add an edge")
                )
                out.append(
                    RouteProblem(nid, path, f"{where} {target!r}, which is not a node of this pipeline", hint)
                )
            elif target not in targets:
                message = f"{where} '{target}', but no edge goes from '{nid}' to '{target}'"
                out.append(RouteProblem(nid, path, message, f"add the edge {{from: {nid}, to: {target}}}"))
    return out


def _lists(type_: str, config: Any) -> Iterator[tuple[Path, list[Any]]]:
    """Each list of route targets in a router's config, with its path inside the config."""
    if not isinstance(config, dict):
        return
    if type_ == "routing":
        if isinstance(config.get("default_pipelines"), list):
            yield ("default_pipelines",), config["default_pipelines"]
        table = config.get("table")
        for i, route in enumerate(table if isinstance(table, list) else []):
            if isinstance(route, dict) and isinstance(route.get("pipelines"), list):
                yield ("table", i, "pipelines"), route["pipelines"]
    elif type_ == "failover":
        levels = config.get("priority_levels")
        for i, level in enumerate(levels if isinstance(levels, list) else []):
            if isinstance(level, list):
                yield ("priority_levels", i), level


def route_targets(type_: str, config: Any) -> list[tuple[Path, Any]]:
    """Every route target a router's config names, with its path inside the config."""
    return [((*path, j), item) for path, items in _lists(type_, config) for j, item in enumerate(items)]


def rewrite_routes(type_: str, config: Any, replace: Callable[[str], list[str]]) -> Any:
    """A copy of the config with each route target replaced by replace(target) (zero or more names;
    duplicates within one list dropped, order kept). A table route or failover level left with no
    target is dropped (the collector refuses a route without pipelines). Other values are shared."""
    if not is_router(type_) or not isinstance(config, dict):
        return config
    out = _copy_lists(config)
    emptied: list[list[Any]] = []
    for path, items in _lists(type_, out):
        new: list[Any] = []
        for item in items:
            for name in replace(item) if isinstance(item, str) else [item]:
                if name not in new:
                    new.append(name)
        if items and not new and path != ("default_pipelines",):
            emptied.append(items)
        items[:] = new
    gone = {id(items) for items in emptied}  # by identity: the lists just emptied, nothing else
    if gone and type_ == "routing":
        out["table"] = [
            r for r in out["table"] if not (isinstance(r, dict) and id(r.get("pipelines")) in gone)
        ]
    elif gone:
        out["priority_levels"] = [lvl for lvl in out["priority_levels"] if id(lvl) not in gone]
    return out


def _copy_lists(value: Any) -> Any:
    """Mappings and lists copied (so route lists can be rewritten in place), scalars shared."""
    if isinstance(value, dict):
        return {k: _copy_lists(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy_lists(v) for v in value]
    return value
