"""Dependencies point one way: schemas <- compiler <- reconciler, webui; agent needs only schemas;
metrics (the metrics process) needs only schemas, and webui and the CLI may use it; fsio (the one
atomic file write) sits below every part that writes files and imports only the standard library.

And the compiler stays pure by test, not by habit: compiler/ and schemas/ import no I/O library
(processes, network, databases, Git, web frameworks, the environment), directly or through
importlib, so files in, configs and diagnostics out is all they can do.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ["fsio", "schemas", "compiler", "reconciler", "agent", "metrics", "webui", "ctrltower"]
ALLOWED = {
    "fsio": {"fsio"},
    "schemas": {"schemas"},
    "compiler": {"schemas", "compiler"},
    "reconciler": {"schemas", "compiler", "reconciler", "fsio"},
    "metrics": {"schemas", "metrics", "fsio"},
    "webui": {"schemas", "compiler", "metrics", "webui", "fsio"},
    "agent": {"schemas", "agent", "fsio"},
    "ctrltower": set(PACKAGES),
}
# Third-party packages the agent must not need (it installs and runs without them).
AGENT_FORBIDDEN = {"flask", "duckdb", "networkx", "git", "jinja2", "granian", "numpy"}
# The metrics process is no web server and no Git client: it scrapes, stores and answers on its socket.
METRICS_FORBIDDEN = {"flask", "werkzeug", "git", "networkx", "jinja2", "granian"}
# Modules that do I/O: none may be imported by the pure layers (a dotted name forbids its submodules).
IO_MODULES = {
    "asyncio",
    "duckdb",
    "flask",
    "ftplib",
    "git",
    "granian",
    "http",
    "httpx",
    "multiprocessing",
    "os",
    "pathlib",
    "requests",
    "select",
    "selectors",
    "shutil",
    "smtplib",
    "socket",
    "socketserver",
    "sqlite3",
    "ssl",
    "subprocess",
    "tempfile",
    "threading",
    "urllib.request",
    "werkzeug",
}
PURE_PACKAGES = ("schemas", "compiler")


def imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


def layer_violations(root: Path, package: str) -> list[str]:
    """`path imports [...]` for each file under root/package that imports a part it may not use, or
    (metrics) a forbidden library; string imports (`importlib.import_module("x")`) count too."""
    out = []
    for path in sorted((root / package).rglob("*.py")):
        names = full_imports_of(path.read_text(), str(path))
        tops = {n.split(".")[0] for n in names}
        bad = (tops & set(PACKAGES)) - ALLOWED[package]
        if package == "metrics":
            bad |= tops & METRICS_FORBIDDEN
        if bad:
            out.append(f"{path.relative_to(root)} imports {sorted(bad)}")
    return out


@pytest.mark.parametrize("package", [p for p in PACKAGES if p != "ctrltower"])
def test_package_imports_only_allowed_layers(package: str) -> None:
    assert layer_violations(ROOT, package) == []


@pytest.mark.parametrize(
    "line",
    [
        "from webui.metrics.client import MetricsClient",
        "import webui.datadir",
        "def f():\n    from webui.store import Store",
        "import importlib\nimportlib.import_module('webui.store')",
        "from compiler.api import compile_repo",
        "from flask import Flask",
        "import git",
        "import networkx as nx",
    ],
)
def test_the_layer_check_catches_metrics_importing_webui(tmp_path: Path, line: str) -> None:
    """The check itself: the metrics process importing webui (or another part, or Flask, Git, networkx)
    is reported; schemas and third-party storage libraries are not."""
    (tmp_path / "metrics").mkdir()
    (tmp_path / "metrics" / "ok.py").write_text(
        "import duckdb\nimport psycopg\nfrom schemas.errors import Permanent\n"
    )
    (tmp_path / "metrics" / "bad.py").write_text(line + "\n")
    found = layer_violations(tmp_path, "metrics")
    assert len(found) == 1 and found[0].startswith("metrics/bad.py imports"), found


def test_fsio_imports_only_the_standard_library() -> None:
    """Everything that writes files depends on fsio, the agent included: it must cost them nothing."""
    for path in sorted((ROOT / "fsio").rglob("*.py")):
        outside = {n for n in imports_of(path) if n not in sys.stdlib_module_names and n != "fsio"}
        assert not outside, f"{path.relative_to(ROOT)} imports {sorted(outside)}"


def test_agent_needs_no_server_dependencies() -> None:
    for path in [*sorted((ROOT / "agent").rglob("*.py")), ROOT / "ctrltower" / "cmd_agent.py"]:
        if path.exists():
            bad = imports_of(path) & AGENT_FORBIDDEN
            assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}"


def full_imports_of(source: str, filename: str) -> set[str]:
    """Every module a file imports, dotted in full, including `importlib.import_module("x")` and
    `__import__("x")` with a literal name (a string import must not slip past the check)."""
    tree = ast.parse(source, filename=filename)
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            if name in ("import_module", "__import__") and isinstance(node.args[0].value, str):
                found.add(node.args[0].value)
    return found


def io_imports(source: str, filename: str) -> set[str]:
    """The I/O modules (IO_MODULES, or a submodule of one) among a file's imports."""
    return {
        name
        for name in full_imports_of(source, filename)
        if any(name == bad or name.startswith(bad + ".") for bad in IO_MODULES)
    }


def pure_layer_violations(root: Path) -> list[str]:
    """`path: modules` for each file under root/{schemas,compiler} that imports an I/O module."""
    out = []
    for package in PURE_PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            bad = io_imports(path.read_text(), str(path))
            if bad:
                out.append(f"{path.relative_to(root)} imports {sorted(bad)}")
    return out


def test_compiler_and_schemas_do_no_io() -> None:
    assert pure_layer_violations(ROOT) == []


@pytest.mark.parametrize(
    "line",
    [
        "import flask",
        "from flask import Flask",
        "import subprocess as sp",
        "from urllib.request import urlopen",
        "import urllib.request",
        "import http.client",
        "from git import Repo",
        "import sqlite3, json",
        "import importlib\nimportlib.import_module('duckdb')",
        "__import__('socket')",
        "def f():\n    import httpx",
    ],
)
def test_the_purity_check_catches_an_io_import(tmp_path: Path, line: str) -> None:
    """The check itself: a compiler module importing I/O (flask above all) is reported."""
    for package in PURE_PACKAGES:
        (tmp_path / package).mkdir()
        (tmp_path / package / "ok.py").write_text("import json\nfrom urllib.parse import quote\n")
    (tmp_path / "compiler" / "bad.py").write_text(line + "\n")
    found = pure_layer_violations(tmp_path)
    assert len(found) == 1 and found[0].startswith("compiler/bad.py imports"), found


# The store speaks the domain, not HTTP: it raises webui.store.errors, and the web layer maps them.
STORE_FORBIDDEN = ("flask", "werkzeug", "webui.errors", "webui.context", "webui.api", "webui.ui")


def store_violations(root: Path) -> list[str]:
    """`path: modules` for each file under root/webui/store that imports Flask, werkzeug or the web layer."""
    out = []
    for path in sorted((root / "webui" / "store").rglob("*.py")):
        names = full_imports_of(path.read_text(), str(path))
        bad = {n for n in names if any(n == f or n.startswith(f + ".") for f in STORE_FORBIDDEN)}
        if bad:
            out.append(f"{path.relative_to(root)} imports {sorted(bad)}")
    return out


def test_the_store_does_not_import_the_web_layer() -> None:
    assert store_violations(ROOT) == []


@pytest.mark.parametrize(
    "line",
    ["from flask import current_app", "import werkzeug.exceptions", "from webui.errors import NotFound"],
)
def test_the_store_check_catches_a_web_import(tmp_path: Path, line: str) -> None:
    (tmp_path / "webui" / "store").mkdir(parents=True)
    (tmp_path / "webui" / "store" / "ok.py").write_text("from webui.store.errors import NotFound\n")
    (tmp_path / "webui" / "store" / "bad.py").write_text(line + "\n")
    found = store_violations(tmp_path)
    assert len(found) == 1 and found[0].startswith("webui/store/bad.py imports"), found
