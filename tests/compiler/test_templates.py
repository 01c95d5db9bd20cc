"""Templating: sandboxed, strict, typed single expressions, env passthrough, literal escapes, DoS limits."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from compiler.api import compile_repo
from compiler.template import TemplateProblem, Templater, escape_literal

GROUP = "kind: AgentGroup\nname: g\nselector: {tier: edge}\nvars: {n: 7, s: '007', 'on': true, host: h}\n"


def render(value: Any) -> tuple[Any, list[TemplateProblem]]:
    problems: list[TemplateProblem] = []
    ctx = {"vars": {"n": 7, "s": "007", "on": True, "host": "h"}, "group": {"name": "g"}, "pipeline": "p"}
    return Templater().render_value(value, ctx, ("x",), problems), problems


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("{{ vars.n }}", 7),
        ("{{ vars.on }}", True),
        ("{{ vars.s }}", "007"),
        ("{{ vars.n }}s", "7s"),
        ("{{ vars.host }}:{{ vars.n }}", "h:7"),
        ("{{ group.name }}-{{ pipeline }}", "g-p"),
        ("${env:X}", "${env:X}"),
        ("${env:X:-{{ vars.host }}}", "${env:X:-h}"),
        ("{% if vars.on %}yes{% endif %}", "yes"),
        ("plain {not a template}", "plain {not a template}"),
    ],
)
def test_render_values(source: str, expected: Any) -> None:
    value, problems = render(source)
    assert problems == []
    assert value == expected
    assert type(value) is type(expected)


@pytest.mark.parametrize(
    ("source", "code"),
    [
        ("{{ vars.nope }}", "CT402"),
        ("{{ nope }}", "CT402"),
        ("{{ vars.host | nope }}", "CT401"),
        ("{% for %}", "CT401"),
        ("{{ ''.__class__ }}", "CT403"),
        ("{{ 'x' * 1000000000 }}", "CT403"),
        ("{{ [1] * 1000000000 }}", "CT403"),
        ("{{ 10 ** 100000000 }}", "CT403"),
        ("{{ 1 / 0 }}", "CT404"),
    ],
)
def test_template_problems(source: str, code: str) -> None:
    value, problems = render({"a": [source]})
    assert [p.code for p in problems] == [code]
    assert problems[0].path == ("x", "a", 0)
    assert value == {"a": [source]}  # left as written, never half-rendered


@pytest.mark.parametrize(
    "literal",
    ["{{ x }}", "{% raw %}", "a {% endraw %} b {{ y }}", "{{'q'}}", "back\\slash {{ z }}", "{#c#}{{"],
)
def test_escape_literal_round_trips(literal: str) -> None:
    value, problems = render(escape_literal(literal))
    assert problems == []
    assert value == literal


def test_templates_in_a_repo_render_per_group() -> None:
    pipeline = """
kind: Pipeline
name: p
groups: [g, h]
signals: [logs]
nodes:
  - {id: r, class: receiver, type: filelog, config: {include: ["${env:DIR}/{{ group.name }}.log"]}}
  - {id: e, class: exporter, type: otlphttp, config: {endpoint: "{{ vars.host }}", timeout: "{{ vars.n }}s"}}
edges: [{from: r, to: e}]
"""
    h = GROUP.replace("name: g", "name: h").replace("host: h", "host: other")
    result = compile_repo({"groups/g.yaml": GROUP, "groups/h.yaml": h, "pipelines/p.yaml": pipeline})
    assert result.ok, [d.format_text() for d in result.diagnostics]
    g, hh = (yaml.safe_load(result.configs[n]) for n in ("g", "h"))
    assert g["receivers"]["filelog/p.r"]["include"] == ["${env:DIR}/g.log"]
    assert hh["exporters"]["otlphttp/p.e"] == {"endpoint": "other", "timeout": "7s"}


def test_unquoted_boolean_key_is_explained() -> None:
    result = compile_repo({"groups/g.yaml": "kind: AgentGroup\nname: g\nvars: {true: 1}\n"})
    (diag,) = result.diagnostics
    assert diag.format_text() == "groups/g.yaml:3:8: error CT104: keys in vars must be strings"
    assert diag.hint is not None and "quote the key" in diag.hint
