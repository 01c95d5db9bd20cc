"""The import round trip's rendered configs, checked by the real collector (`otelcol validate`).

The test collector (fixture `collector_bin`) has few components (receiver filelog; processors batch,
memory_limiter, k8spath; exporter otlphttp), so each rendered config is cut down to the components it
knows, read from the binary's own `components` listing: every one of them stays defined with its
rendered config (the collector validates each component's config), and the ones the rendered logs
pipelines use form a logs pipeline (filelog only reads logs). Where that pipeline would lack a receiver
or an exporter, a stub filelog or otlphttp stands in; it is ours, not the fixture's. The rendered
`service.telemetry` (ctrltower's own) is kept as it is.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from compiler.api import compile_repo
from compiler.importer import import_collector_configs
from tests.compiler.helpers import collector_validate
from tests.compiler.test_import import CONFIGS, FIXTURES, MULTI

CASES = {f.name: [f.name] for f in FIXTURES} | {case: list(files) for case, files in MULTI.items()}
SECTIONS = ("receivers", "processors", "exporters")
STUBS: dict[str, dict[str, Any]] = {
    "receivers": {"filelog/ctrltower-stub": {"include": ["/nonexistent/ctrltower/*.log"]}},
    "exporters": {"otlphttp/ctrltower-stub": {"endpoint": "http://127.0.0.1:9"}},
}
# ${env:NAME} / ${NAME} without a default: the collector needs a value to decode the config
ENV_REF = re.compile(r"\$\{(?:env:)?([A-Za-z_][A-Za-z0-9_]*)\}")


@pytest.fixture(scope="module")
def known(collector_bin: Path) -> dict[str, set[str]]:
    out = subprocess.run(
        [str(collector_bin), "components"], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    listing = yaml.safe_load(out)
    return {s: {c["name"] for c in listing.get(s) or []} for s in SECTIONS}


def _rendered(case: str) -> dict[str, Any] | None:
    """The case imported and rendered; None for a fragment (CT608: imported only with its base)."""
    sources = [(Path(f).name, (CONFIGS / f).read_bytes()) for f in CASES[case]]
    result = import_collector_configs(sources, group="imported")
    errors = {d.code for d in result.diagnostics if d.severity == "error"}
    if "CT608" in errors and errors <= {"CT608", "CT601"}:  # CT601: nothing else left to import
        return None
    assert result.ok, [d.format_text() for d in result.diagnostics]
    compiled = compile_repo(result.files)
    assert compiled.ok, [d.format_text() for d in compiled.diagnostics]
    doc: dict[str, Any] = yaml.safe_load(compiled.configs["imported"])
    return doc


def _cut_down(doc: dict[str, Any] | None, known: dict[str, set[str]]) -> dict[str, Any] | None:
    """The rendered config's components the binary has, and a logs pipeline of those logs uses."""
    if doc is None:
        return None
    defined = {
        s: {k: v for k, v in (doc.get(s) or {}).items() if k.split("/")[0] in known[s]} for s in SECTIONS
    }
    if not any(defined.values()):
        return None
    in_logs: dict[str, list[str]] = {s: [] for s in SECTIONS}
    for pid, spec in doc["service"]["pipelines"].items():
        if pid.split("/")[0] == "logs":
            for s in SECTIONS:
                in_logs[s] += [c for c in spec[s] if c in defined[s] and c not in in_logs[s]]
    for s, stub in STUBS.items():
        if not in_logs[s]:
            defined[s] = {**defined[s], **stub}
            in_logs[s] = list(stub)
    pipeline = {s: sorted(in_logs[s]) if s != "processors" else in_logs[s] for s in SECTIONS}
    return {
        **{s: defined[s] for s in SECTIONS if defined[s]},
        "service": {"telemetry": doc["service"]["telemetry"], "pipelines": {"logs": pipeline}},
    }


def _validate(collector_bin: Path, config: dict[str, Any], tmp_path: Path) -> tuple[int, str]:
    text = yaml.safe_dump(config, sort_keys=False)
    path = tmp_path / "config.yaml"
    path.write_text(text, encoding="utf-8")
    env = dict(os.environ)
    for name in ENV_REF.findall(text):  # placeholders, as a deployment would set them
        env.setdefault(name, "http://127.0.0.1:4318" if "ENDPOINT" in name else "placeholder")
    proc = collector_validate(collector_bin, path, env)
    return proc.returncode, f"{proc.stderr}\n---\n{text}"


@pytest.mark.parametrize("case", sorted(CASES))
def test_rendered_import_passes_the_collectors_validate(
    case: str, known: dict[str, set[str]], collector_bin: Path, tmp_path: Path
) -> None:
    config = _cut_down(_rendered(case), known)
    if config is None:
        pytest.skip("a fragment, or the test collector has none of this config's components")
    code, output = _validate(collector_bin, config, tmp_path)
    assert code == 0, output


def test_the_check_catches_a_config_the_collector_refuses(
    known: dict[str, set[str]], collector_bin: Path, tmp_path: Path
) -> None:
    config = _cut_down(_rendered("hyperdx-standalone"), known)
    assert config is not None
    batch = next(k for k in config["processors"] if k.startswith("batch/"))
    config["processors"][batch] = {"timeout": "not a duration"}
    code, output = _validate(collector_bin, config, tmp_path)
    assert code != 0 and "timeout" in output


def test_the_cut_down_config_keeps_what_the_binary_knows(known: dict[str, set[str]]) -> None:
    """The check above is not vacuous: most real configs keep real components for the collector."""
    kept = {case: _cut_down(_rendered(case), known) for case in CASES}
    real = [
        c
        for c, cfg in kept.items()
        if cfg and any(not k.endswith("ctrltower-stub") for s in SECTIONS for k in cfg.get(s, {}))
    ]
    assert len(real) >= 10, sorted(kept)
