"""A source or ref is data for git, never an option or a command (issue 10, item 1).

Each test reproduces an attack with the real git CLI and checks that it now does no harm: a marker
file the injected command would create must not exist afterwards.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ctrltower import exit_codes
from reconciler.errors import GitError
from reconciler.git import BadSource, GitRepo, Source
from tests.reconciler.gitutil import clean_env, init_repo

ROOT = Path(__file__).resolve().parents[2]


def _ctrltower(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**clean_env(), "CTRLTOWER_TOKEN": "t", "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "ctrltower", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize(
    "template",
    [
        "--upload-pack=touch {marker} #://x",
        "-u touch {marker} #://x",
        "ext::sh -c touch% {marker}",
        "EXT::sh -c touch% {marker}",
    ],
)
def test_reconcile_refuses_option_and_command_sources(tmp_path: Path, template: str) -> None:
    marker = tmp_path / "pwned"
    source = template.format(marker=marker)
    proc = _ctrltower(
        "reconcile",
        "--source",
        source,
        "--server",
        "http://127.0.0.1:9",
        "--cache-dir",
        str(tmp_path / "cache"),
        cwd=tmp_path,
    )
    assert proc.returncode == exit_codes.USAGE, proc.stderr
    assert "--source" in proc.stderr and "Traceback" not in proc.stderr
    assert not marker.exists()
    assert not (tmp_path / "cache").exists()  # refused before git (or the cache) is touched


def test_source_parse_names_the_one_transport() -> None:
    assert Source.parse("https://h/r.git").protocol == "https"
    assert Source.parse("HTTP://h/r.git").protocol == "http"
    assert Source.parse("ssh://git@h/r.git").protocol == "ssh"
    assert Source.parse("git+ssh://git@h/r.git").protocol == "ssh"
    assert Source.parse("git@github.com:org/cfg.git").protocol == "ssh"
    assert Source.parse("git://h/r.git").protocol == "git"
    assert Source.parse("file:///srv/cfg.git").protocol == "file"
    assert Source.parse("relative/dir").protocol == "file"
    for bad in ("-x", "--upload-pack=x", "ext::sh", "fd::3", "ftp://h/r.git", "ext://h/r"):
        with pytest.raises(BadSource):
            Source.parse(bad)


def test_option_shaped_url_after_parse_is_still_not_an_option(tmp_path: Path) -> None:
    """Second line of defence: a Source built without parse still reaches git after `--`."""
    marker = tmp_path / "pwned"
    source = Source(url=f"--upload-pack=touch {marker} #://x", protocol="file")
    with pytest.raises(GitError):
        GitRepo.mirror(source, tmp_path / "cache", environ={}, timeout_s=30)
    assert not marker.exists()


def test_ext_transport_is_off_even_if_a_source_names_it(tmp_path: Path) -> None:
    """Third line: git may use only the source's own transport (GIT_ALLOW_PROTOCOL)."""
    marker = tmp_path / "pwned"
    source = Source(url=f"ext::sh -c touch% {marker}", protocol="https")
    with pytest.raises(GitError, match="not allowed"):
        GitRepo.mirror(source, tmp_path / "cache", environ={}, timeout_s=30)
    assert not marker.exists()


def test_file_transport_only_for_a_local_source(tmp_path: Path) -> None:
    src = init_repo(tmp_path / "src")
    with GitRepo.mirror(Source.parse(str(src)), tmp_path / "cache", environ={}, timeout_s=30) as repo:
        assert repo.resolve("main")
    as_https = Source(url=str(src), protocol="https")
    with pytest.raises(GitError, match="transport 'file' not allowed"):
        GitRepo.mirror(as_https, tmp_path / "cache2", environ={}, timeout_s=30)


def test_inherited_allow_protocol_cannot_widen(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    marker = tmp_path / "pwned"
    monkeypatch.setenv("GIT_ALLOW_PROTOCOL", "ext:file:https")
    monkeypatch.setenv("GIT_PROTOCOL_FROM_USER", "1")
    source = Source(url=f"ext::sh -c touch% {marker}", protocol="https")
    with pytest.raises(GitError):
        GitRepo.mirror(source, tmp_path / "cache", environ=dict(os.environ), timeout_s=30)
    assert not marker.exists()


@pytest.mark.parametrize("ref", ["--output=pwned", "-p"])
def test_plan_refs_are_never_options(tmp_path: Path, ref: str) -> None:
    repo = init_repo(tmp_path / "repo")
    proc = _ctrltower("plan", "--repo", str(repo), "--base", ref, "--head", "main", cwd=tmp_path)
    assert proc.returncode == exit_codes.GIT_ERROR, proc.stderr
    assert "not found" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "pwned").exists() and not (repo / "pwned").exists()
