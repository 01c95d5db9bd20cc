"""Import round trip over real collector configs: import, then render, gives the same data flow."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from compiler.api import compile_repo
from compiler.importer import import_collector_config
from ctrltower.cli import cli
from tests.compiler.helpers import ROOT

FIXTURES = sorted((ROOT / "tests" / "fixtures" / "otel-configs").glob("*.yaml"))
SIGNALS = ("traces", "metrics", "logs")


def _key(doc: dict[str, Any], cid: str, sections: tuple[str, ...]) -> tuple[str, str]:
    """A component by what it is (type and config), not by its id, which import renames."""
    for section in sections:
        if cid in (doc.get(section) or {}):
            config = doc[section][cid]
            return (cid.split("/", 1)[0], json.dumps(config or {}, sort_keys=True, default=str))
    return (cid.split("/", 1)[0], "{}")  # used but not defined (a fragment of a merged config)


def flows(doc: dict[str, Any]) -> dict[str, set[tuple[Any, ...]]]:
    """Per signal: every (source, processor chain, sink) path through the collector pipelines."""
    out: dict[str, set[tuple[Any, ...]]] = {s: set() for s in SIGNALS}
    for pid, spec in (doc["service"].get("pipelines") or {}).items():
        signal = pid.split("/", 1)[0]
        if signal not in out:
            continue
        spec = spec or {}
        chain = tuple(_key(doc, p, ("processors",)) for p in spec.get("processors") or [])
        for r in spec.get("receivers") or []:
            for e in spec.get("exporters") or []:
                out[signal].add(
                    (
                        _key(doc, r, ("connectors", "receivers")),
                        chain,
                        _key(doc, e, ("connectors", "exporters")),
                    )
                )
    return out


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
    assert extensions(rendered) == extensions(original)
    telemetry = rendered["service"]["telemetry"]["metrics"]["readers"][0]["pull"]["exporter"]["prometheus"]
    assert telemetry["host"] == "127.0.0.1"


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
