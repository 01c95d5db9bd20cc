"""Every diagnostic code the compiler can emit and every compiler command is documented."""

from __future__ import annotations

import re

from tests.compiler.helpers import ROOT

SOURCES = [*sorted((ROOT / "compiler").glob("*.py")), ROOT / "ctrltower" / "cmd_compile.py"]


def test_every_diagnostic_code_is_documented() -> None:
    codes = {c for path in SOURCES for c in re.findall(r'"(CT\d{3})"', path.read_text())}
    assert len(codes) > 30
    documented = set(re.findall(r"^\| (CT\d{3}) \|", (ROOT / "docs" / "diagnostics.md").read_text(), re.M))
    assert codes - documented == set(), "undocumented codes"
    assert documented - codes == set(), "documented codes the compiler never emits"


def test_every_compiler_command_is_documented() -> None:
    text = (ROOT / "docs" / "repo-format.md").read_text()
    for command in ("validate", "render", "import", "schema"):
        assert f"### `ctrltower {command}`" in text
