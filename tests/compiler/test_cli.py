"""The compiler's CLI commands, with click's CliRunner and as real subprocesses (exit codes 0/1/2)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from compiler.api import compile_repo
from compiler.jsonschema import json_schemas
from ctrltower.cli import cli
from tests.compiler.helpers import EXAMPLE, ROOT, read_repo

BROKEN = ROOT / "tests" / "golden" / "broken-graph" / "repo"


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ctrltower", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
        check=False,
        env={**os.environ, **(env or {})},
    )


def test_validate_example_is_clean() -> None:
    proc = run("validate", "--repo", str(EXAMPLE))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 errors" in proc.stdout


def test_validate_broken_text_lines() -> None:
    proc = run("validate", "--repo", str(BROKEN))
    assert proc.returncode == 1
    assert "pipelines/bad.yaml:16:5: error CT205: cycle: p1 -> p2 -> p1" in proc.stdout.splitlines()
    assert "Traceback" not in proc.stderr


def test_validate_json_and_github_and_markdown() -> None:
    runner = CliRunner()
    res = runner.invoke(cli, ["validate", "--repo", str(BROKEN), "--format", "json"])
    assert res.exit_code == 1
    body = json.loads(res.output)
    assert body["errors"] == len(body["diagnostics"]) > 0
    first = body["diagnostics"][0]
    assert set(first) >= {"code", "severity", "message", "location"}
    assert {d["location"]["file"] for d in body["diagnostics"]} >= {"pipelines/bad.yaml", "groups/g.yaml"}
    gh = runner.invoke(
        cli, ["validate", "--repo", str(BROKEN), "--format", "github", "--path-prefix", "cfg/"]
    )
    assert gh.exit_code == 1
    assert "::error file=cfg/pipelines/bad.yaml,line=16,col=5,title=CT205::cycle%3A" not in gh.output
    assert "::error file=cfg/pipelines/bad.yaml,line=16,col=5,title=CT205::cycle: p1 -> p2 -> p1" in gh.output
    md = runner.invoke(cli, ["validate", "--repo", str(BROKEN), "--format", "markdown"])
    assert "| error | CT205 | `pipelines/bad.yaml:16:5` |" in md.output


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    assert run("validate", "--repo", str(tmp_path / "nope")).returncode == 2
    runner = CliRunner()
    assert runner.invoke(cli, ["validate", "--repo", str(EXAMPLE), "--format", "xml"]).exit_code == 2
    assert runner.invoke(cli, ["render", "--repo", str(EXAMPLE)]).exit_code == 2
    res = runner.invoke(cli, ["render", "--repo", str(EXAMPLE), "--out", str(tmp_path), "--group", "nope"])
    assert res.exit_code == 2


def test_render_writes_every_group(tmp_path: Path) -> None:
    out = tmp_path / "out"
    res = CliRunner().invoke(cli, ["render", "--repo", str(EXAMPLE), "--out", str(out)])
    assert res.exit_code == 0, res.output
    written = sorted(p.name for p in out.iterdir())
    assert written == ["edge-canary.yaml", "edge.yaml", "gateway.yaml", "k8s-nodes.yaml"]
    assert "filelog/app-logs.tail" in yaml.safe_load((out / "edge.yaml").read_text())["receivers"]
    configs = compile_repo(read_repo(EXAMPLE)).configs
    for group, text in configs.items():  # byte for byte what the server will serve
        assert (out / f"{group}.yaml").read_bytes() == text.encode("utf-8")


def test_render_writes_nothing_for_a_broken_repo(tmp_path: Path) -> None:
    out = tmp_path / "out"
    res = CliRunner().invoke(cli, ["render", "--repo", str(BROKEN), "--out", str(out)])
    assert res.exit_code == 1
    assert not out.exists() or not any(out.iterdir())


def test_schema_export_and_check(tmp_path: Path) -> None:
    runner = CliRunner()
    assert runner.invoke(cli, ["schema", "--out", str(tmp_path), "--check"]).exit_code == 1
    assert runner.invoke(cli, ["schema", "--out", str(tmp_path)]).exit_code == 0
    assert runner.invoke(cli, ["schema", "--out", str(tmp_path), "--check"]).exit_code == 0
    pipeline = json.loads((tmp_path / "pipeline.schema.json").read_text())
    assert "nodes" in pipeline["properties"]


def test_committed_json_schema_is_current() -> None:
    for name, text in json_schemas().items():
        assert (ROOT / "schemas" / "json" / name).read_text() == text, f"run `make schema` ({name} is stale)"


@pytest.mark.collector
def test_validate_with_the_real_collector(tmp_path: Path, collector_bin: Path) -> None:
    repo = tmp_path / "repo"
    for rel in ["groups/edge.yaml", "pipelines/app-logs.yaml"]:
        (repo / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(EXAMPLE / rel, repo / rel)
    env = {"APP_LOG_DIR": str(tmp_path), "OTLP_HTTP_ENDPOINT": "http://127.0.0.1:9"}
    ok = run("validate", "--repo", str(repo), "--collector", str(collector_bin), env=env)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    # the test binary has no debug exporter: the collector rejects the group, reported against it
    text = (repo / "pipelines/app-logs.yaml").read_text().replace("type: otlphttp", "type: debug")
    (repo / "pipelines/app-logs.yaml").write_text(text)
    bad = run("validate", "--repo", str(repo), "--collector", str(collector_bin), env=env)
    assert bad.returncode == 1
    assert "groups/edge.yaml:" in bad.stdout
    assert "CT501" in bad.stdout and "debug" in bad.stdout
