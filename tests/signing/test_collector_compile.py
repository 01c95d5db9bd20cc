"""`collector: {version: V}` in a group file: rendered into the config bytes (so it is reviewed, signed and
delivered like any config change), carried to the server, and a bad version is a diagnostic."""

from __future__ import annotations

from compiler.api import compile_repo
from schemas.repo import COLLECTOR_LINE_PREFIX

PIPELINE = b"""kind: Pipeline
name: logs
groups: [edge, core]
signals: [logs]
nodes:
  - {id: tail, class: receiver, type: filelog, config: {include: [/var/log/*.log]}}
  - {id: ship, class: exporter, type: otlphttp, config: {endpoint: http://127.0.0.1:4318}}
edges:
  - {from: tail, to: ship}
"""


def _files(version_line: str) -> dict[str, bytes]:
    return {
        "groups/edge.yaml": b"kind: AgentGroup\nname: edge\nselector: {tier: edge}\n" + version_line.encode(),
        "groups/core.yaml": b"kind: AgentGroup\nname: core\nselector: {tier: core}\n",
        "pipelines/logs.yaml": PIPELINE,
    }


def test_the_version_is_in_the_rendered_bytes_and_the_group_revision() -> None:
    result = compile_repo(_files("collector: {version: 0.135.0-acme.1}\n"))
    assert result.ok, result.diagnostics
    edge = result.configs["edge"]
    assert edge.splitlines()[1] == f"{COLLECTOR_LINE_PREFIX}0.135.0-acme.1"
    assert COLLECTOR_LINE_PREFIX not in result.configs["core"]  # no version: bytes as before
    by_name = {g.name: g for g in result.groups}
    assert by_name["edge"].collector_version == "0.135.0-acme.1" and by_name["core"].collector_version is None


def test_a_bad_version_is_a_diagnostic_at_its_line() -> None:
    result = compile_repo(_files("collector:\n  version: '../../bin/sh'\n"))
    assert not result.ok
    bad = [d for d in result.diagnostics if d.location.file == "groups/edge.yaml"]
    assert bad and bad[0].location.line == 5, result.diagnostics
    assert "collector.version" in (bad[0].location.key_path or bad[0].message)
