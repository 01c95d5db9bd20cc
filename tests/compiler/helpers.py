"""Helpers for compiler tests: read a repo directory into the {path: bytes} mapping the compiler takes;
ask the real collector whether it would run a rendered config."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.support.ready import patience

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "example-config-repo"


def read_repo(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and ".git" not in p.relative_to(root).parts
    }


def collector_validate(
    collector_bin: Path, config: Path, env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    """`otelcol validate --config FILE` with the real collector: exit code 0 if it would run the config,
    else its reasons on stderr. `env` is all it gets (the variables the config reads)."""
    return subprocess.run(
        [str(collector_bin), "validate", "--config", str(config)],
        capture_output=True,
        text=True,
        env=env,
        timeout=patience(30),
        check=False,
    )
