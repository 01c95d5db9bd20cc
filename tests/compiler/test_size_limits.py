"""Text amplification without templates: a long string aliased many times is few YAML values but a
huge rendered config. The loader counts characters after expansion too (CT107), and a rendered
config over 16 MiB, or all of them over 256 MiB, is CT214 (issue 10, hardening against a PR author).

Before: a 200 KB pipeline file (a 200,000-character string aliased 500 times) rendered to a 100 MB
config; the same at the 4 MiB file limit is terabytes.
"""

from __future__ import annotations

import tracemalloc

from compiler.api import compile_repo
from compiler.loader import MAX_EXPANDED_CHARS
from compiler.render import MAX_TOTAL_CONFIG_CHARS, config_size_problem
from compiler.repo import load_repo

GROUP = "kind: AgentGroup\nname: g\nselector: {a: b}\n"


def _pipeline(name: str, chars: int, copies: int) -> str:
    refs = ", ".join(["*s"] * copies)
    return (
        f"kind: Pipeline\nname: {name}\ngroups: [g]\nsignals: [logs]\nnodes:\n"
        "  - {id: in, class: receiver, type: filelog, config: {include: [/x]}}\n"
        "  - id: out\n    class: exporter\n    type: otlphttp\n    config:\n"
        f'      endpoint: &s "{"x" * chars}"\n      headers: {{x: [{refs}]}}\n'
        "edges:\n  - {from: in, to: out}\n"
    )


def test_string_alias_amplification_is_ct107_before_expansion() -> None:
    files = {"groups/g.yaml": GROUP, "pipelines/p.yaml": _pipeline("p", 200_000, 500)}
    tracemalloc.start()
    try:
        result = compile_repo(files)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    errors = [d for d in result.diagnostics if d.severity == "error"]
    assert [(d.code, d.location.file) for d in errors] == [("CT107", "pipelines/p.yaml")]
    assert f"{MAX_EXPANDED_CHARS:,} characters" in errors[0].message
    assert result.configs == {} and peak < 32 * 1024 * 1024


def test_sharing_a_block_a_few_times_still_loads() -> None:
    repo = load_repo({"groups/g.yaml": GROUP, "pipelines/p.yaml": _pipeline("p", 10_000, 20)})
    assert repo.diagnostics == [] and "p" in repo.pipelines


def test_a_rendered_config_over_16_mib_is_ct214() -> None:
    # each file stays within the loader's limits (~7 MiB of text after aliases); together, 21 MiB
    chars, copies = 1_000_000, 6
    files = {"groups/g.yaml": GROUP}
    for name in ("a", "b", "c"):
        files[f"pipelines/{name}.yaml"] = _pipeline(name, chars, copies)
    result = compile_repo(files)
    errors = [d for d in result.diagnostics if d.severity == "error"]
    assert [(d.code, d.location.file, d.location.line) for d in errors] == [("CT214", "groups/g.yaml", 2)]
    assert "rendered config of group 'g'" in errors[0].message
    assert result.configs == {} and result.groups == []


def test_all_configs_together_over_the_limit_is_ct214() -> None:
    repo = load_repo({"groups/g.yaml": GROUP})
    group = repo.groups["g"]
    assert config_size_problem(group, 1_000, 1_000) is None
    problem = config_size_problem(group, 1_000, MAX_TOTAL_CONFIG_CHARS + 1)
    assert problem is not None and problem.code == "CT214" and "add up to" in problem.message
