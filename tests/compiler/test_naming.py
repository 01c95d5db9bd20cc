"""Diagnostics name nodes, edges and groups by id (issue 17), never by list index, and keep file:line:col."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from compiler.api import compile_repo
from compiler.naming import where
from tests.compiler.helpers import ROOT, read_repo

GOLDEN = ROOT / "tests" / "golden"
CASES = sorted(p / "repo" for p in GOLDEN.iterdir() if (p / "repo").is_dir())
INDEXED = re.compile(r"\b(nodes|edges|groups|components)\[\d")


@pytest.mark.parametrize("repo", CASES, ids=[c.parent.name for c in CASES])
def test_no_diagnostic_counts_list_items(repo: Path) -> None:
    for d in compile_repo(read_repo(repo)).diagnostics:
        assert not INDEXED.search(d.message), d.format_text()
        assert not INDEXED.search(d.location.key_path or ""), (d.format_text(), d.location.key_path)


def test_schema_errors_in_items_name_the_item_and_keep_the_position() -> None:
    files = {
        "groups/edge.yaml": "kind: AgentGroup\nname: edge\n",
        "pipelines/p.yaml": (
            "kind: Pipeline\nname: p\ngroups: [edge]\nsignals: [logs]\nnodes:\n"
            "  - {id: tail, class: receiver, type: filelog}\n"
            "  - id: ship\n    class: exporter\n    type: otlphttp\n    config: 7\n"
            "edges:\n  - {from: tail, to: ship}\n"
        ),
    }
    (d,) = [d for d in compile_repo(files).diagnostics if d.code == "CT104"]
    assert d.message == "node 'ship': config: Input should be a valid dictionary"
    assert (d.location.file, d.location.line, d.location.column) == ("pipelines/p.yaml", 10, 13)
    assert d.location.node == "ship" and d.location.key_path == "nodes[ship].config"


def test_where_falls_back_to_counting_only_without_an_id() -> None:
    doc = {"nodes": [{"id": "a"}, {"class": "receiver"}], "edges": [{"from": "a"}], "groups": [3]}
    assert where(doc, ("nodes", 0, "config", "x", 2)).key_path == "nodes[a].config.x[2]"
    assert where(doc, ("nodes", 1)).subject == "node #2"
    assert where(doc, ("edges", 0, "to")).prefix() == "edge #1: to: "
    assert where(doc, ("groups", 0)).subject == "group #1"
    assert where(doc, ("signals", 1)).key_path == "signals[1]"
    assert where(doc, ()).key_path is None
