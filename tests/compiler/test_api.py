"""compiler.api details the reconciler and the server rely on."""

from __future__ import annotations

from collections.abc import Mapping

from compiler.api import compile_repo, load_repo
from compiler.scope import scope_of
from tests.compiler.helpers import EXAMPLE, read_repo


def test_pipeline_graphs_keep_configs_before_templating() -> None:
    result = compile_repo(read_repo(EXAMPLE))
    graph = next(p for p in result.pipelines if p.name == "app-logs")
    assert graph.file == "pipelines/app-logs.yaml"
    assert graph.groups == ["edge"]
    batch = next(n for n in graph.nodes if n.id == "batch")
    assert batch.config == {"timeout": "{{ vars.batch_timeout }}"}
    assert [(e.from_, e.to, e.signals) for e in graph.edges] == [
        ("tail", "batch", ["logs"]),
        ("batch", "ship", ["logs"]),
    ]
    dumped = graph.model_dump(mode="json", by_alias=True)
    assert dumped["nodes"][0]["class"] == "receiver"


def test_only_groups_renders_just_those() -> None:
    result = compile_repo(read_repo(EXAMPLE), only_groups=["gateway", "nope"])
    assert list(result.configs) == ["gateway"]
    assert [g.name for g in result.groups] == ["gateway"]
    full = compile_repo(read_repo(EXAMPLE))
    assert result.configs["gateway"] == full.configs["gateway"]


def test_group_revision_fields() -> None:
    rev = {g.name: g for g in compile_repo(read_repo(EXAMPLE)).groups}
    assert rev["edge-canary"].selector == {"tier": "edge", "ring": "canary"}
    assert rev["edge-canary"].priority > rev["edge"].priority
    assert rev["gateway"].pipelines == ["gateway-logs", "gateway-metrics", "gateway-traces"]


def test_str_and_bytes_inputs_give_the_same_bytes() -> None:
    files = read_repo(EXAMPLE)
    as_text = {k: v.decode() for k, v in files.items()}
    assert compile_repo(as_text).configs == compile_repo(files).configs


def test_load_repo_maps_files_to_names() -> None:
    repo = load_repo(read_repo(EXAMPLE))
    assert repo.file_groups["groups/edge.yaml"] == ["edge"]
    assert repo.group_pipelines("k8s-nodes") == ["k8s-node-metrics", "k8s-pod-logs"]


def affected_groups(before: Mapping[str, bytes], after: Mapping[str, bytes]) -> set[str]:
    """The groups the scope rule puts in play for the files that differ between two versions."""
    changed = [p for p in sorted(set(before) | set(after)) if before.get(p) != after.get(p)]
    return set(scope_of(before, after, changed).groups)


def test_scope_of_a_change() -> None:
    before = read_repo(EXAMPLE)
    assert affected_groups(before, dict(before)) == set()
    readme = {**before, "README.md": b"changed"}
    assert affected_groups(before, readme) == set()
    pipe = {**before, "pipelines/app-logs.yaml": before["pipelines/app-logs.yaml"] + b"\n# comment\n"}
    assert affected_groups(before, pipe) == {"edge"}
    moved = dict(before)
    moved["pipelines/app-logs.yaml"] = before["pipelines/app-logs.yaml"].replace(
        b"groups: [edge]", b"groups: [gateway]"
    )
    assert affected_groups(before, moved) == {"edge", "gateway"}
    group = {
        **before,
        "groups/gateway.yaml": before["groups/gateway.yaml"].replace(b"priority: 10", b"priority: 1"),
    }
    assert affected_groups(before, group) == {"gateway"}
    new_pipe = {
        **before,
        "pipelines/new.yaml": before["pipelines/app-logs.yaml"].replace(b"name: app-logs", b"name: new"),
    }
    assert affected_groups(before, new_pipe) == {"edge"}
    settings = {**before, "ctrltower.yaml": b"kind: Settings\ntelemetry: {metrics_port: 9000}\n"}
    assert affected_groups(before, settings) == {"edge", "edge-canary", "gateway", "k8s-nodes"}
    broken = {**before, "pipelines/app-logs.yaml": b"kind: Pipeline\nname: [\n"}
    assert affected_groups(before, broken) == {"edge", "edge-canary", "gateway", "k8s-nodes"}
    deleted = {k: v for k, v in before.items() if k != "pipelines/gateway-logs.yaml"}
    assert affected_groups(before, deleted) == {"gateway"}


def test_node_names_must_be_valid_and_unique() -> None:
    pipeline = """
kind: Pipeline
name: p
groups: [g]
signals: [logs]
nodes:
  - {id: r, class: receiver, type: filelog, name: "bad name/x"}
  - {id: e1, class: exporter, type: debug, name: same}
  - {id: e2, class: exporter, type: debug, name: same}
edges: [{from: r, to: e1}, {from: r, to: e2}]
"""
    result = compile_repo({"groups/g.yaml": "kind: AgentGroup\nname: g\n", "pipelines/p.yaml": pipeline})
    assert [(d.code, d.location.line, d.location.node) for d in result.diagnostics] == [
        ("CT308", 7, "r"),
        ("CT308", 9, "e2"),
    ]


def test_combinatorial_graph_is_refused_quickly() -> None:
    # 20 layers of 2 processors, each fully connected to the next: 2**20 paths
    nodes = ["  - {id: r, class: receiver, type: otlp}", "  - {id: e, class: exporter, type: debug}"]
    edges = []
    for layer in range(20):
        for k in range(2):
            nodes.append(f"  - {{id: p{layer}-{k}, class: processor, type: batch}}")
            prev = [f"p{layer - 1}-{j}" for j in range(2)] if layer else ["r"]
            edges += [f"  - {{from: {src}, to: p{layer}-{k}}}" for src in prev]
    edges += [f"  - {{from: p19-{k}, to: e}}" for k in range(2)]
    text = "kind: Pipeline\nname: p\ngroups: [g]\nsignals: [logs]\nnodes:\n" + "\n".join(nodes)
    text += "\nedges:\n" + "\n".join(edges) + "\n"
    result = compile_repo({"groups/g.yaml": "kind: AgentGroup\nname: g\n", "pipelines/p.yaml": text})
    assert [d.code for d in result.diagnostics] == ["CT212"]
