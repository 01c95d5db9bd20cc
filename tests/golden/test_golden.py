"""Golden cases: each tests/golden/<case>/ holds a repo and its expected output, compared byte for byte.

    <case>/repo/...                 the config repo (or <case>/REPO: a path relative to the project root)
    <case>/expected/<group>.yaml    every rendered group config
    <case>/expected/diagnostics.txt the text report (file:line:col, code, message, caret, hint)

`pytest tests/golden --update-golden` rewrites the expected files; review the diff in the commit.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from compiler.api import compile_repo
from compiler.report import format_text
from tests.compiler.helpers import ROOT, read_repo

HERE = Path(__file__).resolve().parent
CASES = sorted(p for p in HERE.iterdir() if p.is_dir() and ((p / "repo").is_dir() or (p / "REPO").is_file()))


def _repo_of(case: Path) -> Path:
    link = case / "REPO"
    return ROOT / link.read_text().strip() if link.is_file() else case / "repo"


def _actual(case: Path, order_seed: int | None = None) -> dict[str, str]:
    files = read_repo(_repo_of(case))
    if order_seed is not None:
        items = list(files.items())
        random.Random(order_seed).shuffle(items)
        files = dict(items)
    result = compile_repo(files)
    out = {f"{group}.yaml": text for group, text in result.configs.items()}
    out["diagnostics.txt"] = format_text(result.diagnostics, files)
    return out


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_golden(case: Path, request: pytest.FixtureRequest) -> None:
    actual = _actual(case)
    expected_dir = case / "expected"
    if request.config.getoption("--update-golden"):
        expected_dir.mkdir(exist_ok=True)
        for old in expected_dir.iterdir():
            if old.name not in actual:
                old.unlink()
        for name, text in actual.items():
            (expected_dir / name).write_text(text, encoding="utf-8")
    expected = {p.name: p.read_text(encoding="utf-8") for p in sorted(expected_dir.iterdir())}
    assert sorted(actual) == sorted(expected), "rendered groups differ (run with --update-golden)"
    for name in expected:
        assert actual[name] == expected[name], f"{case.name}/expected/{name} differs (--update-golden)"


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_golden_is_independent_of_file_order(case: Path) -> None:
    assert _actual(case, order_seed=1) == _actual(case, order_seed=2) == _actual(case)
