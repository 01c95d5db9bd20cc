"""The profiles signal (issue 17): in the repo format, validated per component from the catalog's
signal lists, rendered, behind the ctrltower.yaml opt-in while upstream support is not stable."""

from __future__ import annotations

import yaml

from compiler.api import compile_repo
from compiler.catalog import builtin_catalog
from compiler.importer import import_collector_config

GROUP = "kind: AgentGroup\nname: g\n"
PIPELINE = """kind: Pipeline
name: p
groups: [g]
signals: [profiles]
nodes:
  - {id: in, class: receiver, type: otlp}
  - {id: tx, class: processor, type: TX}
  - {id: out, class: exporter, type: otlphttp}
edges:
  - {from: in, to: tx}
  - {from: tx, to: out}
"""


def _compile(processor: str, settings: str | None = None) -> list[tuple[str, str | None]]:
    files = {"groups/g.yaml": GROUP, "pipelines/p.yaml": PIPELINE.replace("TX", processor)}
    if settings is not None:
        files["ctrltower.yaml"] = settings
    return [(d.code, d.location.node) for d in compile_repo(files).diagnostics]


def test_the_catalog_keeps_profiles_and_its_stability() -> None:
    cat = builtin_catalog()
    otlp = cat.lookup("receiver", "otlp")
    assert otlp is not None and "profiles" in otlp.signals
    assert otlp.stability_of("profiles") == "alpha" and otlp.stability_of("traces") == "stable"
    batch = cat.lookup("processor", "batch")
    assert batch is not None and "profiles" not in batch.signals


def test_profiles_need_the_opt_in_on_every_component_carrying_them() -> None:
    assert _compile("transform") == [("CT311", "in"), ("CT311", "tx"), ("CT311", "out")]
    assert _compile("transform", "kind: Settings\nunstable_signals: [profiles]\n") == []


def test_a_component_without_profiles_is_refused_whatever_the_opt_in() -> None:
    codes = _compile("batch", "kind: Settings\nunstable_signals: [profiles]\n")
    assert codes == [("CT304", "in->tx"), ("CT303", "tx->out")]


def test_custom_types_with_profiles_need_the_opt_in_too() -> None:
    settings = "kind: Settings\ncomponents:\n  - {type: prof, class: processor, signals: [profiles]}\n"
    assert ("CT311", "tx") in _compile("prof", settings)
    assert _compile("prof", settings + "unstable_signals: [profiles]\n") == []


def test_rendered_profiles_pipeline() -> None:
    files = {
        "groups/g.yaml": GROUP,
        "pipelines/p.yaml": PIPELINE.replace("TX", "transform"),
        "ctrltower.yaml": "kind: Settings\nunstable_signals: [profiles]\n",
    }
    doc = yaml.safe_load(compile_repo(files).configs["g"])
    assert doc["service"]["pipelines"] == {
        "profiles/p": {
            "receivers": ["otlp/p.in"],
            "processors": ["transform/p.tx"],
            "exporters": ["otlphttp/p.out"],
        }
    }


def test_import_keeps_profiles_pipelines_and_opts_in() -> None:
    source = """receivers: {otlp: {protocols: {grpc: {}}}}
exporters: {otlphttp: {endpoint: "http://p"}}
service:
  pipelines:
    profiles: {receivers: [otlp], exporters: [otlphttp]}
    logs: {receivers: [otlp], exporters: [otlphttp]}
"""
    result = import_collector_config(source, group="p")
    assert result.ok
    assert [d.code for d in result.diagnostics] == ["CT609"]
    settings = yaml.safe_load(result.files["ctrltower.yaml"])
    assert settings["unstable_signals"] == ["profiles"]
    assert yaml.safe_load(result.files["pipelines/p.yaml"])["signals"] == ["logs", "profiles"]
    compiled = compile_repo(result.files)
    assert compiled.ok and "profiles/p" in yaml.safe_load(compiled.configs["p"])["service"]["pipelines"]
    again = import_collector_config(
        source, group="p", pipeline="q", existing={"ctrltower.yaml": result.files["ctrltower.yaml"]}
    )
    assert "ctrltower.yaml" not in again.files  # already opted in: not rewritten
