"""Real Git repositories in tmp_path for the reconciler tests (the git CLI, never mocks)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "example-config-repo"


def clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(
        GIT_AUTHOR_NAME="Test Author",
        GIT_AUTHOR_EMAIL="author@example.com",
        GIT_COMMITTER_NAME="Test Committer",
        GIT_COMMITTER_EMAIL="committer@example.com",
        GIT_CONFIG_NOSYSTEM="1",
        GIT_CONFIG_GLOBAL=os.devnull,
    )
    return env


def git(cwd: Path, *args: str) -> str:
    out = subprocess.run(
        ["git", *args], cwd=cwd, env=clean_env(), check=True, capture_output=True, text=True, timeout=60
    )
    return out.stdout.strip()


def init_repo(
    path: Path, *, from_dir: Path | None = EXAMPLE, subdir: str = "", rollouts: bool = True
) -> Path:
    """A repo on branch main whose first commit holds `from_dir` (at `subdir`); `rollouts=False`
    leaves out its rollout policies (every publish then reaches every agent at once)."""
    path.mkdir(parents=True, exist_ok=True)
    git(path, "init", "-q", "-b", "main")
    if from_dir is not None:
        shutil.copytree(from_dir, path / subdir if subdir else path, dirs_exist_ok=True)
        if not rollouts:
            shutil.rmtree((path / subdir if subdir else path) / "rollouts", ignore_errors=True)
    (path / "README.md").write_text("config repo\n")
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "initial config")
    return path


def write(repo: Path, rel: str, text: str) -> None:
    target = repo / rel
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text)


def commit(repo: Path, message: str, **files: str) -> str:
    """Write files (keyword names use __ for /) and commit them; return the new SHA."""
    for name, text in files.items():
        write(repo, name.replace("__", "/"), text)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "--allow-empty", "-m", message)
    return git(repo, "rev-parse", "HEAD")


def edit(repo: Path, rel: str, old: str, new: str) -> None:
    target = repo / rel
    text = target.read_text()
    assert old in text, f"{old!r} not in {rel}"
    target.write_text(text.replace(old, new))


def head(repo: Path, ref: str = "HEAD") -> str:
    return git(repo, "rev-parse", ref)
