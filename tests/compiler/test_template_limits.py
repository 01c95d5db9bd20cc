"""Template limits (issue 10, item 3): each attack that built gigabytes or ran for hours is stopped
by a counted budget (CT405) or the immutable sandbox (CT403), and allocates little on the way.

Memory is measured with tracemalloc (every Python allocation, strings and lists included), so "no
gigabytes" is an assertion, not a hope. Time is not asserted (the machine is shared); the counted
step budget is what bounds it, and a per-test timeout guards against a regression.
"""

from __future__ import annotations

import tracemalloc
from typing import Any

import pytest

from compiler.api import compile_repo
from compiler.sandbox import MAX_STEPS, MAX_STRING, MAX_TOTAL_STEPS
from compiler.template import TemplateProblem, Templater

PEAK_LIMIT = 64 * 1024 * 1024  # bytes: every attack below is stopped long before this

ATTACKS = {
    "ljust": "{{ 'x'.ljust(1000000000) }}",
    "rjust keyword": "{{ 'x'.rjust(width=1000000000) }}",
    "zfill": "{{ '1'.zfill(1000000000) }}",
    "expandtabs": "{{ ('\\t' * 50000).expandtabs(100000) }}",
    "center filter": "{{ 'x'|center(1000000000) }}",
    "percent width": "{{ '%0999999999d' % 1 }}",
    "percent star": "{{ '%*d' % (999999999, 1) }}",
    "format filter": "{{ '%0999999999d'|format(1) }}",
    "brace width": "{{ '{:>999999999}'.format(1) }}",
    "brace nested": "{{ '{:>{}}'.format(1, 999999999) }}",
    "format_map": "{{ '{x:>999999999}'.format_map({'x': 1}) }}",
    "namespace doubling ~": (
        "{% set ns = namespace(s='x') %}{% for i in range(64) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}"
    ),
    "namespace doubling +": (
        "{% set ns = namespace(s=[1]) %}{% for i in range(64) %}{% set ns.s = ns.s + ns.s %}{% endfor %}"
    ),
    "replace doubling": (
        "{% set ns = namespace(s='xx') %}{% for i in range(64) %}"
        "{% set ns.s = ns.s.replace('x', 'xx') %}{% endfor %}"
    ),
    "nested range loops": "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
    "nested loops writing": (
        "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}"
    ),
    "macro buffer": (
        "{% macro m() %}{% for i in range(100000) %}{{ 'y' * 99 }}{% endfor %}{% endmacro %}"
        "{% set v = m() %}{% set w = m() %}ok"
    ),
    "set block": "{% set v %}{% for i in range(100000) %}{{ 'y' * 99 }}{% endfor %}{% endset %}ok",
    "shared references": "{% set l = ['x'.ljust(50000)] * 100000 %}{{ l ~ '' }}",
    "join": "{{ range(100000)|join('x'.ljust(1000)) }}",
    "indent": "{{ 'a\\nb\\nc'|indent('x'.ljust(90000)) }}",
    "wordwrap": "{{ 'aaaa aaaa aaaa'|wordwrap(1, wrapstring='x'.ljust(50000)) }}",
    "batch": "{{ [1]|batch(1000000000, 'x')|list|length }}",
    "slice": "{{ [1]|slice(1000000000)|list|length }}",
    "integer squaring": (
        "{% set ns = namespace(v=3) %}{% for i in range(100) %}{% set ns.v = ns.v * ns.v %}{% endfor %}"
    ),
    "power": "{{ (10 ** 999) ** 999 }}",
    "scan in a loop": (
        "{% set b = 'x'.ljust(99999) %}{% for i in range(100000) %}{% if 'zz' in b %}{% endif %}{% endfor %}"
    ),
    "sum in a loop": "{% set l = range(50000)|list %}{% for i in range(100000) %}{{ l|sum }}{% endfor %}",
}


BYTES_AND_TABLES = {
    "bytes *": "{{ 'x'.encode() * 1000000000 }}",
    "bytes ljust": "{{ 'x'.encode().ljust(1000000000) }}",
    "bytes percent": "{{ '%0999999999d'.encode() % 1 }}",
    "bytes replace": "{{ ('x' * 50000).encode().replace('x'.encode(), ('y' * 50000).encode()) }}",
    "translate": "{{ ('x' * 100000).translate({120: 'y' * 100000}) }}",
}


def render(source: str, templater: Templater | None = None) -> tuple[Any, list[TemplateProblem], int]:
    templater = templater or Templater()
    templater.start_budget()
    problems: list[TemplateProblem] = []
    ctx = {"vars": {"a": "A", "l": [1, 2]}, "group": {"name": "g"}, "pipeline": "p"}
    tracemalloc.start()
    try:
        value = templater.render_value(source, ctx, ("x",), problems)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return value, problems, peak


@pytest.mark.timeout(120)
@pytest.mark.parametrize("source", ATTACKS.values(), ids=list(ATTACKS))
def test_attack_is_stopped_with_ct405_and_little_memory(source: str) -> None:
    value, problems, peak = render(source)
    assert [p.code for p in problems] == ["CT405"], problems
    assert problems[0].message.startswith("template over its budget: ")
    assert value == source  # nothing rendered
    assert peak < PEAK_LIMIT


@pytest.mark.timeout(120)
@pytest.mark.parametrize("source", BYTES_AND_TABLES.values(), ids=list(BYTES_AND_TABLES))
def test_bytes_and_translate_are_bounded_too(source: str) -> None:
    value, problems, peak = render(source)
    assert [p.code for p in problems] in (["CT403"], ["CT405"]), problems
    assert value == source and peak < PEAK_LIMIT


def test_legitimate_templates_still_render() -> None:
    for source, expected in [
        ("{{ vars.a }}-{% for x in vars.l %}{{ x }}{% endfor %}", "A-12"),
        (
            "{{ 'x'.ljust(3) }}|{{ 'x'|center(3) }}|{{ '%03d' % 7 }}|{{ '{:>3}'.format(1) }}",
            "x  | x |007|  1",
        ),
        ("{% set ns = namespace(s='ab') %}{% set ns.s = ns.s ~ ns.s %}{{ ns.s }}", "abab"),
        ("{{ vars.l|join(',') }}", "1,2"),
        ("{% for i in range(3) %}{{ loop.index }}{% endfor %}", "123"),
    ]:
        value, problems, _ = render(source)
        assert problems == [] and value == expected, (source, problems)
    value, problems, _ = render("{{ 'x'.ljust(" + str(MAX_STRING) + ") }}")
    assert problems == [] and len(value) == MAX_STRING


def test_budget_is_per_group_and_stops_later_values_quietly() -> None:
    templater = Templater()
    loop = (
        "{% set b = 'x'.ljust(99999) %}{% for i in range("
        + str(MAX_STEPS // 2000 + 1)
        + ") %}{% if b == b %}{% endif %}{% endfor %}"
    )
    _, problems, _ = render(loop, templater)
    assert [p.code for p in problems] == ["CT405"]
    after: list[TemplateProblem] = []
    ctx = {"vars": {}, "group": {}, "pipeline": "p"}
    assert templater.render_value("{{ 1 + 1 }}", ctx, ("y",), after) == "{{ 1 + 1 }}"
    assert after == []  # the group already failed: one diagnostic, not one per value
    templater.start_budget()  # the next group starts afresh
    assert templater.render_value("{{ 1 + 1 }}", ctx, ("y",), after) == 2 and after == []


def test_repo_budget_stops_a_template_that_stays_under_the_group_budget() -> None:
    templater = Templater()
    # just under one group's budget (each comparison of 100,000 characters costs 2,000 steps),
    # repeated in group after group
    under = "{% set b = 'x'.ljust(99999) %}{% for i in range(200) %}{% if b == b %}{% endif %}{% endfor %}"
    codes: list[str] = []
    for _ in range(MAX_TOTAL_STEPS // 400_000 + 2):
        _, problems, _ = render(under, templater)
        codes += [p.code for p in problems]
    assert codes == ["CT405"]
    assert "all groups together" in str(templater.env.total.what)


GROUP = "kind: AgentGroup\nname: g\nselector: {tier: edge}\nvars: {endpoint: 'https://good.example'}\n"


def _pipeline(name: str, value: str) -> str:
    return (
        f"kind: Pipeline\nname: {name}\ngroups: [g]\nsignals: [logs]\nnodes:\n"
        "  - {id: in, class: receiver, type: filelog, config: {include: [/x]}}\n"
        f'  - id: out\n    class: exporter\n    type: otlphttp\n    config:\n      endpoint: "{value}"\n'
        "edges:\n  - {from: in, to: out}\n"
    )


def test_vars_update_cannot_leak_into_later_pipelines() -> None:
    """Before: `vars.update()` in pipeline a changed vars.endpoint for pipeline b (sorted after it)."""
    files = {
        "groups/g.yaml": GROUP,
        "pipelines/a.yaml": _pipeline("a", "{{ vars.update({'endpoint': 'https://evil.example'}) }}x"),
        "pipelines/b.yaml": _pipeline("b", "{{ vars.endpoint }}"),
    }
    result = compile_repo(files)
    errors = [d for d in result.diagnostics if d.severity == "error"]
    assert [(d.code, d.location.file, d.location.line, d.location.column) for d in errors] == [
        ("CT403", "pipelines/a.yaml", 11, 17)
    ]
    assert "'update'" in errors[0].message
    assert result.repo is not None and result.repo.groups["g"].model.vars == {
        "endpoint": "https://good.example"
    }
    for mutate in ("{{ vars.pop('endpoint') }}", "{{ group.selector.clear() }}", "{{ [1].append(2) }}"):
        files["pipelines/a.yaml"] = _pipeline("a", mutate)
        assert [d.code for d in compile_repo(files).diagnostics if d.severity == "error"] == ["CT403"]


def test_over_budget_is_a_diagnostic_at_the_value() -> None:
    files = {"groups/g.yaml": GROUP, "pipelines/a.yaml": _pipeline("a", "{{ 'x'.ljust(1000000000) }}")}
    result = compile_repo(files)
    [diag] = result.diagnostics
    assert (diag.code, diag.location.file, diag.location.line, diag.location.column) == (
        "CT405",
        "pipelines/a.yaml",
        11,
        17,
    )
    assert diag.group == "g" and result.configs == {}


def test_sandbox_escape_through_attr_format_is_refused() -> None:
    """CVE-2025-27516 (fixed in Jinja 3.1.6, the floor in pyproject.toml): |attr reached str.format."""
    _, problems, _ = render("{{ ('{0.__class__}'|attr('format'))(vars) }}")
    assert [p.code for p in problems] == ["CT403"]


def test_random_filter_is_not_available() -> None:
    """A render is deterministic (what the PR's plan showed is what agents run): no |random."""
    _, problems, _ = render("{{ [1, 2, 3]|random }}")
    assert [p.code for p in problems] == ["CT401"]
