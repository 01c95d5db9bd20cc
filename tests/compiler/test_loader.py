"""The position-keeping loader: YAML 1.2 scalars (as the collector reads them) and positions."""

from __future__ import annotations

import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from compiler.api import compile_repo
from compiler.loader import dump_yaml, load_yaml


def test_scalars_resolve_like_the_collector() -> None:
    doc, _ = load_yaml(
        "a: [on, off, yes, no, true, False, 12:30, 2024-01-01, 0o17, 0x1f, 1.5, 1e3, null, ~]\n"
    )
    assert doc is not None
    assert doc.data["a"] == [
        "on",
        "off",
        "yes",
        "no",
        True,
        False,
        "12:30",
        "2024-01-01",
        15,
        31,
        1.5,
        1000.0,
        None,
        None,
    ]


def test_strings_that_look_like_yaml11_values_stay_strings_when_rendered() -> None:
    pipeline = """
kind: Pipeline
name: p
groups: [g]
signals: [logs]
nodes:
  - {id: r, class: receiver, type: filelog, config: {include: [/x], start_at: end, flag: on, when: 12:30}}
  - {id: e, class: exporter, type: otlphttp, config: {endpoint: "http://x"}}
edges: [{from: r, to: e}]
"""
    result = compile_repo({"groups/g.yaml": "kind: AgentGroup\nname: g\n", "pipelines/p.yaml": pipeline})
    assert result.ok
    config = result.configs["g"]
    recv = yaml.safe_load(config)["receivers"]["filelog/p.r"]
    assert recv["flag"] == "on"  # PyYAML (1.1) reads the rendered file: it is quoted, so a string
    assert recv["when"] == "12:30"


def test_positions_of_values_and_keys() -> None:
    doc, dups = load_yaml(
        "kind: Pipeline\nnodes:\n  - id: a\n    config:\n      x: [1, 2]\n  - {id: b}\nkind: again\n"
    )
    assert doc is not None
    pos = doc.positions
    assert pos.value(("nodes", 0, "id")) == (3, 9)
    assert pos.key(("nodes", 0, "config")) == (4, 5)
    assert pos.value(("nodes", 0, "config", "x", 1)) == (5, 14)
    assert pos.value(("nodes", 1, "id")) == (6, 10)
    assert pos.value(("nodes", 7, "missing")) == pos.value(("nodes",)) == (3, 3)
    assert dups == [("kind", (7, 1))]


def test_dump_is_block_style_without_aliases() -> None:
    shared = {"a": 1}
    text = dump_yaml({"x": shared, "y": shared, "long": "z" * 300})
    assert "&" not in text and "*" not in text
    assert text.count("\n") == 5


_scalars = st.one_of(
    st.text(max_size=12),
    st.sampled_from(
        ["0o17", "1e3", "+1E5", ".5e2", "on", "12:30", "2024-01-01", "0x1f", "1_000", "true", "~", "007"]
    ),
    st.integers(-(10**12), 10**12),
    st.floats(allow_nan=False, allow_infinity=True),
    st.booleans(),
    st.none(),
)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.text(min_size=1, max_size=8), st.lists(_scalars, max_size=4), max_size=4))
def test_dump_then_load_is_lossless(data: dict[str, list[object]]) -> None:
    doc, _ = load_yaml(dump_yaml({"d": data}))
    assert doc is not None
    assert doc.data == {"d": data}
