"""`ctrltower plan` exit codes and formats, with click's CliRunner and as a real subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from ctrltower import exit_codes
from ctrltower.cli import cli
from ctrltower.params import parse_duration
from tests.reconciler.gitutil import ROOT, commit, edit, init_repo


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    repo = init_repo(tmp_path / "cfg")
    commit(repo, "docs only", docs__notes__md="x\n")  # not a repo file: renders nothing
    return repo


def invoke(*args: str) -> click.testing.Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_no_change_exits_zero_even_with_exit_code(repo: Path) -> None:
    result = invoke("plan", "--repo", str(repo), "--base", "HEAD~1", "--exit-code")
    assert result.exit_code == exit_codes.OK, result.output
    assert "no change to any group's rendered config" in result.output


def test_changes_exit_zero_or_changes_with_exit_code(repo: Path) -> None:
    edit(repo, "pipelines/app-logs.yaml", "start_at: end", "start_at: beginning")
    commit(repo, "change")
    plain = invoke("plan", "--repo", str(repo), "--base", "HEAD~1")
    assert plain.exit_code == exit_codes.OK and "~ group edge: update" in plain.output
    flagged = invoke("plan", "--repo", str(repo), "--base", "HEAD~1", "--exit-code", "--format", "json")
    assert flagged.exit_code == exit_codes.CHANGES
    data = json.loads(flagged.output)
    assert data["has_changes"] and data["changes"][0]["group"] == "edge"
    full = invoke("plan", "--repo", str(repo), "--base", "HEAD~1", "--full", "--format", "json")
    assert json.loads(full.output)["changes"] == data["changes"]
    assert json.loads(full.output)["validated_files"] == json.loads(full.output)["repo_files"]


def test_invalid_head_exits_findings(repo: Path) -> None:
    edit(repo, "pipelines/app-logs.yaml", "class: exporter", "class: exporterz")
    commit(repo, "broken")
    result = invoke("plan", "--repo", str(repo), "--base", "HEAD~1", "--format", "github", "--exit-code")
    assert result.exit_code == exit_codes.FINDINGS
    assert "::error file=pipelines/app-logs.yaml,line=" in result.output


def test_git_errors_exit_git_error(repo: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["plan", "--repo", str(repo), "--base", "nope"])
    assert result.exit_code == exit_codes.GIT_ERROR and "ref 'nope' not found" in result.output
    empty = tmp_path / "empty"
    empty.mkdir()
    result = CliRunner().invoke(cli, ["plan", "--repo", str(empty), "--base", "main"])
    assert result.exit_code == exit_codes.GIT_ERROR and "not inside a Git repository" in result.output


def test_server_errors_and_usage(repo: Path) -> None:
    no_token = CliRunner().invoke(
        cli, ["plan", "--repo", str(repo), "--base", "HEAD~1", "--server", "http://127.0.0.1:9"], env={}
    )
    assert no_token.exit_code == exit_codes.USAGE
    down = CliRunner().invoke(
        cli,
        ["plan", "--repo", str(repo), "--base", "HEAD~1", "--server", "http://127.0.0.1:9", "--token", "t"],
    )
    assert down.exit_code == exit_codes.SERVER_ERROR and "cannot reach the server" in down.output
    bad_format = CliRunner().invoke(cli, ["plan", "--repo", str(repo), "--base", "HEAD~1", "--format", "x"])
    assert bad_format.exit_code == exit_codes.USAGE


def test_plan_as_subprocess(repo: Path) -> None:
    edit(repo, "ctrltower.yaml", "metrics_port: 8888", "metrics_port: 8889")
    commit(repo, "port")
    done = subprocess.run(
        [sys.executable, "-m", "ctrltower", "plan", "--repo", str(repo), "--base", "HEAD~1", "--exit-code"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == exit_codes.CHANGES, done.stderr
    assert "scope widened: ctrltower.yaml changed: it applies to every group" in done.stdout
    md = subprocess.run(
        [
            sys.executable,
            "-m",
            "ctrltower",
            "plan",
            "--repo",
            str(repo),
            "--base",
            "HEAD~1",
            "--format",
            "markdown",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert md.returncode == 0 and md.stdout.count("<details><summary>") == 4


def test_parse_duration() -> None:
    assert parse_duration("60s") == 60 and parse_duration("5m") == 300 and parse_duration("250ms") == 0.25
    assert parse_duration("2") == 2 and parse_duration("1h") == 3600
    for bad in ("", "soon", "-1s", "0s"):
        with pytest.raises(click.BadParameter):
            parse_duration(bad)


def test_reconcile_server_down_and_bad_options(repo: Path, tmp_path: Path) -> None:
    base = ["reconcile", "--source", str(repo), "--cache-dir", str(tmp_path / "cache")]
    down = CliRunner().invoke(cli, [*base, "--server", "http://127.0.0.1:9"], env={"CTRLTOWER_TOKEN": "t"})
    assert down.exit_code == exit_codes.SERVER_ERROR, down.output
    assert "cannot reach the server" in down.output and "Traceback" not in down.output
    bad = CliRunner().invoke(
        cli, [*base, "--server", "http://127.0.0.1:9", "--interval", "soon"], env={"CTRLTOWER_TOKEN": "t"}
    )
    assert bad.exit_code == exit_codes.USAGE and "not a duration" in bad.output
    empty = CliRunner().invoke(
        cli, ["reconcile", "--source", "", "--server", "http://127.0.0.1:9"], env={"CTRLTOWER_TOKEN": "t"}
    )
    assert empty.exit_code == exit_codes.USAGE
