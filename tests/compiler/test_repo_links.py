"""Symbolic links and oversized files in a repo directory (issue 10, item 7): `validate`, `render`
and `import --repo` refuse them unread with CT109 / CT102, and print nothing of a link's target.

Before: `pipelines/x.yaml -> ../.git/config` (or any file outside the repo) was followed, and the
diagnostics' source snippets printed the target's lines.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from compiler.loader import MAX_FILE_BYTES
from ctrltower import exit_codes
from ctrltower.cli import cli
from ctrltower.repo_dir import scan_repo_dir
from tests.compiler.helpers import EXAMPLE, ROOT

SECRET = "TOPSECRET-do-not-print"


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    shutil.copytree(EXAMPLE, repo)
    (tmp_path / "secret.txt").write_text(f"[core]\n\tpassword = {SECRET}\nkind: {SECRET}\n")
    return repo


@pytest.mark.parametrize(
    "link",
    ["pipelines/leak.yaml", "groups/leak.yaml", "ctrltower.yaml", "pipelines/sub/leak.yaml"],
)
def test_validate_refuses_a_file_link_out_of_the_repo(repo: Path, link: str) -> None:
    target = repo / link
    target.parent.mkdir(parents=True, exist_ok=True)
    target.unlink(missing_ok=True)
    target.symlink_to(os.path.relpath(repo.parent / "secret.txt", target.parent))
    for fmt in ("text", "json", "github", "markdown"):
        out = CliRunner().invoke(cli, ["validate", "--repo", str(repo), "--format", fmt])
        assert out.exit_code == exit_codes.FINDINGS, out.output
        assert "CT109" in out.output and link in out.output
        assert SECRET not in out.output and "[core]" not in out.output


def test_validate_refuses_a_link_to_git_config_and_a_linked_directory(repo: Path) -> None:
    subprocess.run(["git", "init", "-q", str(repo)], check=True, capture_output=True)
    (repo / "pipelines" / "x.yaml").symlink_to("../.git/config")
    outside = repo.parent / "elsewhere"
    outside.mkdir()
    (outside / "p.yaml").write_text(f"kind: Pipeline\nname: {SECRET}\n")
    (repo / "groups" / "more").symlink_to(outside)
    out = CliRunner().invoke(cli, ["validate", "--repo", str(repo)])
    assert out.exit_code == exit_codes.FINDINGS
    assert sorted(ln.split(":")[0] for ln in out.output.splitlines() if "CT109" in ln) == [
        "groups/more",
        "pipelines/x.yaml",
    ]
    assert "[core]" not in out.output and "repositoryformatversion" not in out.output
    assert SECRET not in out.output


def test_a_linked_kind_directory_is_refused(repo: Path, tmp_path: Path) -> None:
    shutil.move(repo / "pipelines", tmp_path / "real-pipelines")
    (repo / "pipelines").symlink_to(tmp_path / "real-pipelines")
    files, refused = scan_repo_dir(repo)
    assert [d.location.file for d in refused] == ["pipelines"] and [d.code for d in refused] == ["CT109"]
    assert not any(p.startswith("pipelines/") for p in files)


def test_render_writes_nothing_when_a_link_is_refused(repo: Path, tmp_path: Path) -> None:
    (repo / "pipelines" / "leak.yaml").symlink_to(repo.parent / "secret.txt")
    out_dir = tmp_path / "out"
    out = CliRunner().invoke(cli, ["render", "--repo", str(repo), "--out", str(out_dir)])
    assert out.exit_code == exit_codes.FINDINGS
    assert "CT109" in out.output and SECRET not in out.output
    assert not out_dir.exists()


def test_import_refuses_links_before_reading_or_writing(repo: Path, tmp_path: Path) -> None:
    source = tmp_path / "collector.yaml"
    source.write_text(
        "receivers: {otlp: {}}\nexporters: {debug: {}}\n"
        "service: {pipelines: {logs: {receivers: [otlp], exporters: [debug]}}}\n"
    )
    (repo / "groups" / "imported.yaml").symlink_to(repo.parent / "secret.txt")
    out = CliRunner().invoke(cli, ["import", str(source), "--repo", str(repo), "--group", "imported"])
    assert out.exit_code == exit_codes.FINDINGS
    assert "CT109" in out.output and SECRET not in out.output
    assert not (repo / "pipelines" / "imported.yaml").exists()
    # a linked directory import would write into: refused, nothing written through it
    (repo / "groups" / "imported.yaml").unlink()
    shutil.rmtree(repo / "pipelines")
    (tmp_path / "outside").mkdir()
    (repo / "pipelines").symlink_to(tmp_path / "outside")
    out = CliRunner().invoke(cli, ["import", str(source), "--repo", str(repo), "--group", "imported"])
    assert out.exit_code == exit_codes.FINDINGS and "CT109" in out.output
    assert list((tmp_path / "outside").iterdir()) == []


def test_oversized_file_is_refused_unread(repo: Path) -> None:
    big = repo / "pipelines" / "big.yaml"
    with big.open("wb") as fh:  # sparse: the size is real, the disk use is not
        fh.truncate(MAX_FILE_BYTES + 1)
    huge = repo / "pipelines" / "huge.yaml"
    with huge.open("wb") as fh:
        fh.truncate(8 * 1024**3)  # 8 GiB: reading it would take the machine down
    (repo / "docs-not-config.bin").write_bytes(b"\0" * 1024)  # outside the kind dirs: never looked at
    files, refused = scan_repo_dir(repo)
    assert [(d.code, d.location.file) for d in refused] == [
        ("CT102", "pipelines/big.yaml"),
        ("CT102", "pipelines/huge.yaml"),
    ]
    assert "8,589,934,592 bytes" in refused[1].message
    assert "pipelines/big.yaml" not in files and "docs-not-config.bin" not in files


def test_validate_as_subprocess_prints_no_target(repo: Path) -> None:
    (repo / "pipelines" / "leak.yaml").symlink_to("/etc/passwd")
    proc = subprocess.run(
        [sys.executable, "-m", "ctrltower", "validate", "--repo", str(repo)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert proc.returncode == exit_codes.FINDINGS
    assert "CT109" in proc.stdout and "root:" not in proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr


def test_repo_files_over_the_total_limit_are_ct114(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Many files each under the per-file limit are a bomb too. The limit is lowered for the test
    (256 MiB of real files would only make the test slow), the code path is the real one."""
    import ctrltower.repo_dir as repo_dir

    monkeypatch.setattr(repo_dir, "MAX_REPO_BYTES", 20_000)
    for i in range(10):
        (repo / "pipelines" / f"pad-{i}.yaml").write_text("# padding\n" * 300)  # 3,000 bytes each
    files, refused = scan_repo_dir(repo)
    assert [d.code for d in refused] == ["CT114"]
    assert sum(len(v) for v in files.values()) <= 20_000
    assert refused[0].location.file not in files
    out = CliRunner().invoke(cli, ["validate", "--repo", str(repo)])
    assert out.exit_code == exit_codes.FINDINGS and "CT114" in out.output


def test_too_many_repo_files_are_ct114(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import ctrltower.repo_dir as repo_dir

    monkeypatch.setattr(repo_dir, "MAX_REPO_FILES", 5)
    files, refused = scan_repo_dir(repo)
    assert len(files) == 5 and [d.code for d in refused] == ["CT114"]
