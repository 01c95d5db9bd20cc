"""Routing connectors (issue 17): routes are edges in the repo, collector pipelines once rendered."""

from __future__ import annotations

import yaml

from compiler.api import compile_repo
from compiler.importer import import_collector_config

GROUP = "kind: AgentGroup\nname: g\n"


def _pipeline(routes: str, edges: str = "") -> dict[str, str]:
    return {
        "groups/g.yaml": GROUP,
        "pipelines/p.yaml": f"""kind: Pipeline
name: p
groups: [g]
signals: [logs]
nodes:
  - {{id: in, class: receiver, type: filelog}}
  - {{id: r, class: connector, type: routing, config: {routes}}}
  - {{id: a, class: exporter, type: otlphttp}}
  - {{id: b, class: exporter, type: otlphttp}}
edges:
  - {{from: in, to: r}}
  - {{from: r, to: a}}
{edges}""",
    }


def test_a_route_must_name_a_node_the_connector_has_an_edge_to() -> None:
    ok = compile_repo(
        _pipeline(
            "{default_pipelines: [a], table: [{condition: 'true', pipelines: [b]}]}", "  - {from: r, to: b}\n"
        )
    )
    assert ok.ok, [d.format_text() for d in ok.diagnostics]
    bad = compile_repo(_pipeline("{default_pipelines: [aa], table: [{condition: 'true', pipelines: [b]}]}"))
    found = [(d.code, d.location.node, d.location.key_path, d.message) for d in bad.diagnostics]
    assert (
        "CT312",
        "r",
        "nodes[r].config.default_pipelines[0]",
        "connector 'r' (routing) routes to 'aa', which is not a node of this pipeline",
    ) in found
    assert (
        "CT312",
        "r",
        "nodes[r].config.table[0].pipelines[0]",
        "connector 'r' (routing) routes to 'b', but no edge goes from 'r' to 'b'",
    ) in found
    hint = next(d.hint for d in bad.diagnostics if "'aa'" in d.message)
    assert hint == "did you mean 'a'?"
    # the position is the route's own entry in the file
    line = next(d.location.line for d in bad.diagnostics if "'aa'" in d.message)
    assert line == 7


def test_direct_routes_render_as_one_pipeline_each() -> None:
    files = _pipeline(
        "{default_pipelines: [a], table: [{condition: 'true', pipelines: [b]}]}", "  - {from: r, to: b}\n"
    )
    doc = yaml.safe_load(compile_repo(files).configs["g"])
    pipelines = doc["service"]["pipelines"]
    router = doc["connectors"]["routing/p.r"]
    (default,) = router["default_pipelines"]
    (routed,) = router["table"][0]["pipelines"]
    assert pipelines[default]["exporters"] == ["otlphttp/p.a"]
    assert pipelines[routed]["exporters"] == ["otlphttp/p.b"]


def test_import_drops_a_route_to_a_pipeline_that_does_not_receive_from_the_connector() -> None:
    source = """receivers: {otlp: {}}
exporters: {otlphttp/a: {endpoint: "http://a"}, otlphttp/b: {endpoint: "http://b"}}
connectors:
  routing:
    default_pipelines: [logs/a]
    table:
      - {condition: "true", pipelines: [logs/b, logs/nowhere]}
service:
  pipelines:
    logs/in: {receivers: [otlp], exporters: [routing]}
    logs/a: {receivers: [routing], exporters: [otlphttp/a]}
    logs/b: {receivers: [otlp], exporters: [otlphttp/b]}
"""
    result = import_collector_config(source, group="g")
    assert result.ok
    dropped = sorted(d.message for d in result.diagnostics if d.code == "CT607")
    assert dropped == [
        "connector 'routing' routes to pipeline 'logs/b', which is not imported or does not receive from it; "
        "that route is left out",
        "connector 'routing' routes to pipeline 'logs/nowhere', which is not imported or does not receive "
        "from it; that route is left out",
    ]
    doc = yaml.safe_load(result.files["pipelines/g.yaml"])
    (router,) = [n for n in doc["nodes"] if n["type"] == "routing"]
    assert router["config"]["default_pipelines"] == ["otlphttp.a"]
    assert router["config"]["table"] == []  # its only route led nowhere imported: left out
    assert compile_repo(result.files).ok


def test_failover_priority_levels_round_trip() -> None:
    source = """receivers: {otlp: {}}
exporters: {otlphttp/main: {endpoint: "http://main"}, otlphttp/backup: {endpoint: "http://backup"}}
processors: {batch: {}}
connectors:
  failover:
    priority_levels: [[traces/main], [traces/backup, traces/gone]]
service:
  pipelines:
    traces/in: {receivers: [otlp], exporters: [failover]}
    traces/main: {receivers: [failover], processors: [batch], exporters: [otlphttp/main]}
    traces/backup: {receivers: [failover], exporters: [otlphttp/backup]}
"""
    result = import_collector_config(source, group="g")
    assert result.ok and [d.code for d in result.diagnostics] == ["CT607"]  # traces/gone
    compiled = compile_repo(result.files)
    assert compiled.ok, [d.format_text() for d in compiled.diagnostics]
    doc = yaml.safe_load(compiled.configs["g"])
    levels = doc["connectors"]["failover/g.failover"]["priority_levels"]
    pipelines = doc["service"]["pipelines"]
    assert [[pipelines[p]["exporters"] for p in level] for level in levels] == [
        [["otlphttp/g.otlphttp.main"]],
        [["otlphttp/g.otlphttp.backup"]],
    ]
    assert pipelines[levels[0][0]]["processors"] == ["batch/g.traces.main.batch"]
