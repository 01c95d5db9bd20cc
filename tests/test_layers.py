"""Dependencies point one way: schemas <- compiler <- reconciler, webui; agent needs only schemas."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ["schemas", "compiler", "reconciler", "agent", "webui", "ctrltower"]
ALLOWED = {
    "schemas": {"schemas"},
    "compiler": {"schemas", "compiler"},
    "reconciler": {"schemas", "compiler", "reconciler"},
    "webui": {"schemas", "compiler", "webui"},
    "agent": {"schemas", "agent"},
    "ctrltower": set(PACKAGES),
}
# Third-party packages the agent must not need (it installs and runs without them).
AGENT_FORBIDDEN = {"flask", "duckdb", "networkx", "git", "jinja2", "granian", "numpy"}


def imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


@pytest.mark.parametrize("package", [p for p in PACKAGES if p != "ctrltower"])
def test_package_imports_only_allowed_layers(package: str) -> None:
    for path in sorted((ROOT / package).rglob("*.py")):
        project_imports = imports_of(path) & set(PACKAGES)
        bad = project_imports - ALLOWED[package]
        assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}"


def test_agent_needs_no_server_dependencies() -> None:
    for path in [*sorted((ROOT / "agent").rglob("*.py")), ROOT / "ctrltower" / "cmd_agent.py"]:
        if path.exists():
            bad = imports_of(path) & AGENT_FORBIDDEN
            assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}"
