"""`import` reads the repo files it merges into with the project's loader and its limits (issue 10,
item 9): an alias bomb in an existing group file or ctrltower.yaml is CT107, and nothing is written.

PyYAML's safe_load builds a bomb as shared references in no time; the harm came after, when the
merged file was dumped back with every alias written out. The bomb here expands to ~4.2 million
values (over the loader's 1,000,000): before the fix, dumping it took minutes and gigabytes.
"""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from compiler.importer import import_collector_config
from ctrltower import exit_codes
from ctrltower.cli import cli

COLLECTOR = """\
receivers:
  madeup: {}
exporters:
  debug: {}
extensions:
  health_check: {}
service:
  extensions: [health_check]
  pipelines:
    logs:
      receivers: [madeup]
      exporters: [debug]
"""


def _bomb(head: str) -> str:
    lines = [head, "bomb:", '  a0: &a0 ["x", "x", "x", "x", "x", "x", "x", "x"]']
    for i in range(1, 8):
        refs = ", ".join([f"*a{i - 1}"] * 8)
        lines.append(f"  a{i}: &a{i} [{refs}]")
    return "\n".join(lines) + "\n"


GROUP_BOMB = _bomb("kind: AgentGroup\nname: edge\nselector: {group: edge}")
SETTINGS_BOMB = _bomb("kind: Settings")


def test_alias_bomb_in_existing_group_file_is_ct107() -> None:
    result = import_collector_config(COLLECTOR, group="edge", existing={"groups/edge.yaml": GROUP_BOMB})
    assert not result.ok
    [diag] = [d for d in result.diagnostics if d.severity == "error"]
    assert diag.code == "CT107" and diag.location.file == "groups/edge.yaml"
    assert "groups/edge.yaml" not in result.files


def test_alias_bomb_in_existing_settings_is_ct107() -> None:
    result = import_collector_config(COLLECTOR, group="edge", existing={"ctrltower.yaml": SETTINGS_BOMB})
    assert not result.ok
    assert [d.code for d in result.diagnostics if d.severity == "error"] == ["CT107"]
    assert result.diagnostics[-1].location.file == "ctrltower.yaml"
    assert "ctrltower.yaml" not in result.files


def test_existing_file_not_a_mapping_is_a_diagnostic_not_a_traceback() -> None:
    result = import_collector_config(COLLECTOR, group="edge", existing={"groups/edge.yaml": "- a\n- b\n"})
    assert [d.code for d in result.diagnostics if d.severity == "error"] == ["CT103"]


def test_cli_import_into_repo_with_bomb_writes_nothing(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    (repo / "groups").mkdir(parents=True)
    (repo / "groups" / "edge.yaml").write_text(GROUP_BOMB)
    source = tmp_path / "collector.yaml"
    source.write_text(COLLECTOR)
    out = CliRunner().invoke(cli, ["import", str(source), "--repo", str(repo), "--group", "edge"])
    assert out.exit_code == exit_codes.FINDINGS, out.output
    assert "CT107" in out.output and "Traceback" not in out.output
    assert not (repo / "pipelines").exists()
    assert (repo / "groups" / "edge.yaml").read_text() == GROUP_BOMB
