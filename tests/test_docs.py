"""Project-wide documentation checks: every CLI command, exit code and API endpoint is documented.

Part-specific checks (diagnostic codes, options, UI routes) live beside each part's tests.
"""

from __future__ import annotations

import re
from pathlib import Path

from ctrltower import exit_codes
from ctrltower.cli import COMMANDS
from tests.conftest import ROOT
from tests.support.server import InProcessServer
from webui.openapi import api_rules

DOCS = "\n".join(p.read_text() for p in sorted((ROOT / "docs").glob("*.md")))
README = (ROOT / "README.md").read_text()


def test_every_cli_command_is_in_the_readme_and_docs() -> None:
    for name in COMMANDS:
        assert f"`ctrltower {name}" in README, f"ctrltower {name} is missing from the README's CLI table"
        assert f"ctrltower {name}" in DOCS, f"ctrltower {name} is not documented in docs/"


def test_every_exit_code_is_in_the_readme() -> None:
    codes = {value for name, value in vars(exit_codes).items() if name.isupper() and isinstance(value, int)}
    assert len(codes) >= 8
    for code in codes:
        assert re.search(rf"\b{code} [A-Za-z]", README), f"exit code {code} is not in the README"


def test_every_api_endpoint_is_documented(tmp_path: Path) -> None:
    srv = InProcessServer(tmp_path, ui=True, metrics=True)
    rules = api_rules(srv.app)
    assert any(path.startswith("/api/v1/metrics") for _, path, _ in rules)
    for method, path, _ in rules:
        plain = re.sub(r"\{[^}]+\}", "", path)
        assert f"{method} {path}" in DOCS or f"{method} {plain}" in DOCS, f"{method} {path} is undocumented"
