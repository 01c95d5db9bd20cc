"""Import round trip over real collector configs: import, then render, gives the same data flow."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from compiler.api import compile_repo
from compiler.importer import import_collector_config, import_collector_configs
from ctrltower.cli import cli
from tests.compiler.helpers import ROOT

CONFIGS = ROOT / "tests" / "fixtures" / "otel-configs"
FIXTURES = sorted(CONFIGS.glob("*.yaml"))
SIGNALS = ("traces", "metrics", "logs", "profiles")
# Real multi-file setups (sources in tests/fixtures/otel-configs/SOURCES.md), in the order the project
# passes them to `otelcol --config ... --config ...`.
MULTI = {
    "hyperdx-standalone": [
        "multi/hyperdxio__hyperdx__docker_otel-collector_config.yaml",
        "multi/hyperdxio__hyperdx__docker_otel-collector_config.standalone.yaml",
    ],
    "hyperdx-standalone-auth": [
        "multi/hyperdxio__hyperdx__docker_otel-collector_config.yaml",
        "multi/hyperdxio__hyperdx__docker_otel-collector_config.standalone.yaml",
        "multi/hyperdxio__hyperdx__docker_otel-collector_config.standalone.auth.yaml",
    ],
    "hyperdx-dev-custom": [
        "multi/hyperdxio__hyperdx__docker_otel-collector_config.yaml",
        "multi/hyperdxio__hyperdx__docker_otel-collector_config.standalone.yaml",
        "multi/hyperdxio__hyperdx__docker_otel-collector_custom.config.yaml",
    ],
    "lgtm-export-http-debug": [
        "multi/grafana__docker-otel-lgtm__docker_otelcol-config-export-http.yaml",
        "multi/grafana__docker-otel-lgtm__docker_otelcol-config-debug.yaml",
    ],
    "lgtm-remotetap": [
        "grafana__docker-otel-lgtm__docker_otelcol-config.yaml",
        "multi/grafana__docker-otel-lgtm__docker_otelcol-config-remotetap.yaml",
    ],
    "demo-extras": [
        "multi/open-telemetry__opentelemetry-demo__src_otel-collector_otelcol-config.yaml",
        "multi/open-telemetry__opentelemetry-demo__src_otel-collector_otelcol-config-extras.yaml",
    ],
    "demo-opamp-extras": [
        "multi/open-telemetry__opentelemetry-demo__src_otel-collector_otelcol-config.yaml",
        "multi/open-telemetry__opentelemetry-demo__src_otel-collector_otelcol-config-opamp.yaml",
        "multi/open-telemetry__opentelemetry-demo__src_otel-collector_otelcol-config-extras.yaml",
    ],
}


def collector_merge(base: Any, overlay: Any) -> Any:
    """The collector's documented merge, written out independently of the importer's: maps merge
    at every depth, anything else from the later file replaces."""
    if isinstance(base, dict) and isinstance(overlay, dict):
        return {**base, **{k: collector_merge(base[k], v) if k in base else v for k, v in overlay.items()}}
    return overlay


def sources_of(case: str) -> list[tuple[str, bytes]]:
    return [(Path(f).name, (CONFIGS / f).read_bytes()) for f in MULTI[case]]


def _route_lists(type_: str, config: Any) -> list[list[Any]]:
    """The lists of pipeline ids a routing or failover connector's config holds (the collector's
    documented fields), in order."""
    if not isinstance(config, dict):
        return []
    if type_ == "routing":
        table = config.get("table") or []
        return [config.get("default_pipelines") or [], *[(r or {}).get("pipelines") or [] for r in table]]
    if type_ == "failover":
        return list(config.get("priority_levels") or [])
    return []


def _without_routes(type_: str, config: Any) -> Any:
    """A router's config minus its pipeline ids (those are compared by what they lead to: routes())."""
    if type_ == "routing" and isinstance(config, dict):
        table = [{k: v for k, v in (r or {}).items() if k != "pipelines"} for r in config.get("table") or []]
        return {**{k: v for k, v in config.items() if k != "default_pipelines"}, "table": table}
    if type_ == "failover" and isinstance(config, dict):
        return {k: v for k, v in config.items() if k != "priority_levels"}
    return config


def _key(doc: dict[str, Any], cid: str, sections: tuple[str, ...]) -> tuple[str, str]:
    """A component by what it is (type and config), not by its id, which import renames."""
    type_ = cid.split("/", 1)[0]
    for section in sections:
        if cid in (doc.get(section) or {}):
            config = doc[section][cid]
            if section == "connectors":
                config = _without_routes(type_, config)
            return (type_, json.dumps(config or {}, sort_keys=True, default=str))
    return (type_, "{}")  # used but not defined (a fragment of a merged config)


def _pipeline_flows(doc: dict[str, Any], spec: Any) -> set[tuple[Any, ...]]:
    """(processor chain, sink) of one collector pipeline, whatever feeds it."""
    spec = spec or {}
    chain = tuple(_key(doc, p, ("processors",)) for p in spec.get("processors") or [])
    return {(chain, _key(doc, e, ("connectors", "exporters"))) for e in spec.get("exporters") or []}


def flows(doc: dict[str, Any]) -> dict[str, set[tuple[Any, ...]]]:
    """Per signal: every (source, processor chain, sink) path through the collector pipelines."""
    out: dict[str, set[tuple[Any, ...]]] = {s: set() for s in SIGNALS}
    for pid, spec in (doc["service"].get("pipelines") or {}).items():
        signal = pid.split("/", 1)[0]
        if signal not in out:
            continue
        for r in (spec or {}).get("receivers") or []:
            for chain, sink in _pipeline_flows(doc, spec):
                out[signal].add((_key(doc, r, ("connectors", "receivers")), chain, sink))
    return out


def routes(doc: dict[str, Any]) -> list[tuple[tuple[str, str], list[frozenset[tuple[Any, ...]]]]]:
    """Each routing/failover connector with, per route in order, the flows its pipelines carry on:
    a route must lead to the same chains and sinks before and after import, whatever the names."""
    pipelines = doc["service"].get("pipelines") or {}
    out = []
    for cid, config in (doc.get("connectors") or {}).items():
        lists = _route_lists(cid.split("/", 1)[0], config)
        if not lists:
            continue
        per_route = [
            frozenset(f for pid in names if pid in pipelines for f in _pipeline_flows(doc, pipelines[pid]))
            for names in lists
        ]
        out.append((_key(doc, cid, ("connectors",)), per_route))
    return sorted(out, key=repr)


def extensions(doc: dict[str, Any]) -> dict[str, Any]:
    enabled = doc["service"].get("extensions") or []
    return {e: (doc.get("extensions") or {}).get(e) or {} for e in enabled}


@pytest.mark.parametrize("fixture", FIXTURES, ids=[f.name[:60] for f in FIXTURES])
def test_import_then_render_keeps_data_flow(fixture: Path) -> None:
    source = fixture.read_bytes()
    original = yaml.safe_load(source)
    result = import_collector_config(source, group="imported", source_name=fixture.name)
    if not any(flows(original).values()):
        # a fragment (pipelines without receivers, merged with another file at run time)
        assert "CT608" in {d.code for d in result.diagnostics}
        assert not result.ok
        return
    assert result.ok, [d.format_text() for d in result.diagnostics]
    compiled = compile_repo(result.files)
    assert compiled.ok, [d.format_text() for d in compiled.diagnostics]
    rendered = yaml.safe_load(compiled.configs["imported"])
    assert flows(rendered) == flows(original)
    assert any(flows(original).values())
    assert routes(rendered) == routes(original)
    assert extensions(rendered) == extensions(original)
    telemetry = rendered["service"]["telemetry"]["metrics"]["readers"][0]["pull"]["exporter"]["prometheus"]
    assert telemetry["host"] == "127.0.0.1"


@pytest.mark.parametrize("case", sorted(MULTI))
def test_multi_file_import_then_render_keeps_the_merged_data_flow(case: str) -> None:
    sources = sources_of(case)
    original: Any = {}
    for _, raw in sources:
        original = collector_merge(original, yaml.safe_load(raw) or {})
    result = import_collector_configs(sources, group="imported")
    assert result.ok, [d.format_text() for d in result.diagnostics]
    compiled = compile_repo(result.files)
    assert compiled.ok, [d.format_text() for d in compiled.diagnostics]
    rendered = yaml.safe_load(compiled.configs["imported"])
    assert any(flows(original).values())
    assert flows(rendered) == flows(original)
    assert routes(rendered) == routes(original)
    assert extensions(rendered) == extensions(original)


def test_merge_follows_the_collector_and_diagnostics_point_into_each_file() -> None:
    base = """receivers:
  filelog: {include: [/a.log], start_at: end}
processors:
  batch: {timeout: 1s}
  unused: {}
exporters:
  otlphttp: {endpoint: "http://a", headers: {x: "1"}}
service:
  pipelines:
    logs:
      receivers: [filelog]
      processors: [batch]
      exporters: [otlphttp]
"""
    overlay = """receivers:
  filelog: {include: [/b.log]}
exporters:
  otlphttp: {headers: {y: "2"}}
service:
  pipelines:
    logs:
      processors: []
    logs/extra:
      receivers: [filelog]
      exporters: [nowhere]
"""
    result = import_collector_configs([("base.yaml", base), ("overlay.yaml", overlay)], group="m")
    assert result.ok, [d.format_text() for d in result.diagnostics]
    where = {(d.code, d.location.file, d.location.line) for d in result.diagnostics}
    assert ("CT606", "base.yaml", 5) in where  # processor 'unused': defined in the base
    assert ("CT606", "base.yaml", 4) in where  # batch: no pipeline uses it once the overlay empties the chain
    assert ("CT603", "overlay.yaml", 9) in where  # exporter 'nowhere', named by the overlay's pipeline
    doc = yaml.safe_load(result.files["pipelines/m.yaml"])
    nodes = {n["id"]: n for n in doc["nodes"]}
    assert nodes["filelog"]["config"] == {
        "include": ["/b.log"],
        "start_at": "end",
    }  # list replaced, map merged
    assert nodes["otlphttp"]["config"] == {"endpoint": "http://a", "headers": {"x": "1", "y": "2"}}
    assert not any(n["class"] == "processor" for n in doc["nodes"])
    assert doc["description"] == "imported from base.yaml, overlay.yaml"


def test_a_fragment_alone_is_refused_and_imports_with_its_base() -> None:
    base, overlay = sources_of("lgtm-export-http-debug")
    alone = import_collector_configs([overlay], group="f")
    fragments = [d for d in alone.diagnostics if d.code == "CT608"]
    assert not alone.ok and len(fragments) == 3  # traces, metrics, logs: exporters only
    assert all(d.location.file == overlay[0] for d in fragments)
    assert "ctrltower import base.yaml overlay.yaml" in (fragments[0].hint or "")
    assert import_collector_configs([base, overlay], group="f").ok


def test_each_broken_file_is_reported() -> None:
    result = import_collector_configs([("a.yaml", "[unclosed"), ("b.yaml", "- a list\n")], group="x")
    assert not result.ok and result.files == {}
    assert {(d.code, d.location.file) for d in result.diagnostics} == {
        ("CT101", "a.yaml"),
        ("CT601", "b.yaml"),
    }


def test_literal_template_text_comes_back_verbatim() -> None:
    source = """
receivers:
  filelog:
    include: ["/var/log/{{app}}/*.log"]
    operators:
      - type: add
        field: attributes.note
        value: "{% not a template %} and {{ neither }}"
exporters:
  otlphttp:
    endpoint: ${env:OTLP_HTTP_ENDPOINT}
service:
  pipelines:
    logs:
      receivers: [filelog]
      exporters: [otlphttp]
"""
    result = import_collector_config(source, group="literal")
    assert result.ok, [d.format_text() for d in result.diagnostics]
    compiled = compile_repo(result.files)
    assert compiled.ok, [d.format_text() for d in compiled.diagnostics]
    doc = yaml.safe_load(compiled.configs["literal"])
    (recv,) = doc["receivers"].values()
    assert recv["include"] == ["/var/log/{{app}}/*.log"]
    assert recv["operators"][0]["value"] == "{% not a template %} and {{ neither }}"
    (exp,) = doc["exporters"].values()
    assert exp["endpoint"] == "${env:OTLP_HTTP_ENDPOINT}"


def test_unknown_component_types_are_declared_in_settings() -> None:
    source = """
receivers:
  acme_tail: {path: /x}
exporters:
  acme_ship/one: {url: "http://x"}
service:
  pipelines:
    logs:
      receivers: [acme_tail]
      exporters: [acme_ship/one]
"""
    result = import_collector_config(source, group="acme")
    settings = yaml.safe_load(result.files["ctrltower.yaml"])
    declared = {(c["class"], c["type"]): c["signals"] for c in settings["components"]}
    assert declared == {("receiver", "acme_tail"): ["logs"], ("exporter", "acme_ship"): ["logs"]}
    assert compile_repo(result.files).ok


@pytest.mark.parametrize(
    "source",
    ["", "just a string", "receivers: {}\n", "service: {pipelines: {}}\n", b"\xff\xfe\x00junk"],
)
def test_bad_collector_configs_give_diagnostics(source: str | bytes) -> None:
    result = import_collector_config(source, group="x")
    assert not result.ok
    assert result.files == {}
    assert all(d.code.startswith("CT") for d in result.diagnostics)


def test_cli_import_creates_repo_and_refuses_to_overwrite(tmp_path: Path) -> None:
    fixture = next(f for f in FIXTURES if "examples_local_otel-config" in f.name)
    repo = tmp_path / "repo"
    runner = CliRunner()
    res = runner.invoke(cli, ["import", str(fixture), "--repo", str(repo), "--group", "local"])
    assert res.exit_code == 0, res.output
    assert (repo / "pipelines" / "local.yaml").is_file()
    assert (repo / "groups" / "local.yaml").is_file()
    assert (repo / ".schema" / "pipeline.schema.json").is_file()
    again = runner.invoke(cli, ["import", str(fixture), "--repo", str(repo), "--group", "local"])
    assert again.exit_code == 1
    assert "CT604" in again.output
    bad = runner.invoke(cli, ["import", str(fixture), "--repo", str(repo), "--group", "Bad_Name"])
    assert bad.exit_code == 2
    assert runner.invoke(cli, ["validate", "--repo", str(repo)]).exit_code == 0


def test_cli_import_merges_several_files_in_order(tmp_path: Path) -> None:
    files = [str(CONFIGS / f) for f in MULTI["hyperdx-standalone"]]
    repo = tmp_path / "repo"
    runner = CliRunner()
    res = runner.invoke(cli, ["import", *files, "--repo", str(repo), "--group", "hdx"])
    assert res.exit_code == 0, res.output
    # the telemetry warning names the base, where service.telemetry is written
    assert "hyperdxio__hyperdx__docker_otel-collector_config.yaml:67:3: warning CT605" in res.output
    doc = yaml.safe_load((repo / "pipelines" / "hdx.yaml").read_text())
    assert {n["type"] for n in doc["nodes"]} >= {"transform", "routing", "clickhouse"}
    (router,) = [n for n in doc["nodes"] if n["type"] == "routing"]
    assert router["config"]["default_pipelines"] == ["logs.out-default.memory_limiter"]  # routes are edges
    assert {"from": router["id"], "to": "logs.out-default.memory_limiter", "signals": ["logs"]} in doc[
        "edges"
    ]
    alone = runner.invoke(cli, ["import", files[1], "--repo", str(tmp_path / "r2"), "--group", "hdx"])
    assert alone.exit_code == 0, alone.output  # processors undefined without the base: warnings only
    assert "CT603" in alone.output
    assert runner.invoke(cli, ["import", "--repo", str(repo), "--group", "x"]).exit_code == 2
