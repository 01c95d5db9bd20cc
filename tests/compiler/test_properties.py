"""Property tests on random pipeline graphs (hypothesis).

- a random valid DAG compiles, and the rendered collector pipelines carry exactly the graph's paths;
- the output does not depend on file order, node order or edge order, and loads back as YAML;
- the same DAG plus a back edge is always rejected with CT205, naming a cycle that exists.
"""

from __future__ import annotations

import itertools
import random
from typing import Any

import networkx as nx
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from compiler.api import compile_repo

RECEIVERS = ["filelog", "otlp"]
PROCESSORS = ["batch", "attributes", "memory_limiter"]
EXPORTERS = ["otlphttp", "debug"]
GROUP = "kind: AgentGroup\nname: g\n"


@st.composite
def dags(draw: st.DrawFn) -> dict[str, Any]:
    nr = draw(st.integers(1, 3))
    np_ = draw(st.integers(0, 5))
    ne = draw(st.integers(1, 3))
    recv = [f"r{i}" for i in range(nr)]
    proc = [f"p{i}" for i in range(np_)]
    exp = [f"e{i}" for i in range(ne)]
    edges: set[tuple[str, str]] = set()
    for i, p in enumerate(proc):
        preds = recv + proc[:i]
        edges.add((draw(st.sampled_from(preds)), p))
        succs = proc[i + 1 :] + exp
        edges.add((p, draw(st.sampled_from(succs))))
    for r in recv:
        edges.add((r, draw(st.sampled_from(proc + exp))))
    for e in exp:
        edges.add((draw(st.sampled_from(recv + proc)), e))
    extra = draw(st.lists(st.tuples(st.integers(0, 50), st.integers(0, 50)), max_size=6))
    order = recv + proc + exp
    for a, b in extra:
        src, dst = order[a % len(order)], order[b % len(order)]
        if src in exp or dst in recv or src == dst:
            continue
        if src in proc and dst in proc and proc.index(src) >= proc.index(dst):
            continue
        if src in recv and dst in recv:
            continue
        edges.add((src, dst))
    nodes = (
        [{"id": r, "class": "receiver", "type": draw(st.sampled_from(RECEIVERS))} for r in recv]
        + [
            {"id": p, "class": "processor", "type": draw(st.sampled_from(PROCESSORS)), "config": {"n": p}}
            for p in proc
        ]
        + [{"id": e, "class": "exporter", "type": draw(st.sampled_from(EXPORTERS))} for e in exp]
    )
    return {"nodes": nodes, "edges": sorted(edges), "seed": draw(st.integers(0, 2**16))}


def pipeline_yaml(dag: dict[str, Any], shuffle: int | None = None, extra_edges: list[Any] = ()) -> str:
    nodes = list(dag["nodes"])
    edges = [{"from": a, "to": b} for a, b in [*dag["edges"], *extra_edges]]
    if shuffle is not None:
        rnd = random.Random(shuffle)
        rnd.shuffle(nodes)
        rnd.shuffle(edges)
    doc = {
        "kind": "Pipeline",
        "name": "rand",
        "groups": ["g"],
        "signals": ["logs"],
        "nodes": nodes,
        "edges": edges,
    }
    return yaml.safe_dump(doc, sort_keys=False)


def graph_paths(dag: dict[str, Any]) -> set[tuple[str, tuple[str, ...], str]]:
    g = nx.DiGraph(dag["edges"])
    kinds = {n["id"]: n["class"] for n in dag["nodes"]}
    out = set()
    for r in (n for n in g if kinds[n] == "receiver"):
        for e in (n for n in g if kinds[n] == "exporter"):
            for path in nx.all_simple_paths(g, r, e):
                if all(kinds[n] == "processor" for n in path[1:-1]):
                    out.add((r, tuple(path[1:-1]), e))
    return out


def rendered_paths(config: str) -> set[tuple[str, tuple[str, ...], str]]:
    doc = yaml.safe_load(config)
    strip = lambda cid: cid.split(".", 1)[1]  # noqa: E731  type/rand.<node id> -> node id
    out = set()
    for spec in doc["service"]["pipelines"].values():
        chain = tuple(strip(p) for p in spec["processors"])
        for r in spec["receivers"]:
            for e in spec["exporters"]:
                out.add((strip(r), chain, strip(e)))
    return out


SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(dags())
def test_random_dag_compiles_to_exactly_its_paths(dag: dict[str, Any]) -> None:
    result = compile_repo({"groups/g.yaml": GROUP, "pipelines/rand.yaml": pipeline_yaml(dag)})
    assert result.ok, [d.format_text() for d in result.diagnostics]
    config = result.configs["g"]
    assert rendered_paths(config) == graph_paths(dag)
    assert isinstance(yaml.safe_load(config), dict)


@SETTINGS
@given(dags())
def test_output_independent_of_file_node_and_edge_order(dag: dict[str, Any]) -> None:
    base = compile_repo({"groups/g.yaml": GROUP, "pipelines/rand.yaml": pipeline_yaml(dag)})
    shuffled = compile_repo(
        {"pipelines/rand.yaml": pipeline_yaml(dag, shuffle=dag["seed"]), "groups/g.yaml": GROUP}
    )
    assert shuffled.configs == base.configs
    assert [g.config_hash for g in shuffled.groups] == [g.config_hash for g in base.groups]


@SETTINGS
@given(dags(), st.data())
def test_back_edge_is_always_rejected_with_a_real_cycle(dag: dict[str, Any], data: st.DataObject) -> None:
    g = nx.DiGraph(dag["edges"])
    procs = [n["id"] for n in dag["nodes"] if n["class"] == "processor"]
    pairs = [(a, b) for a in procs for b in procs if a != b and nx.has_path(g, a, b)] + [
        (p, p) for p in procs
    ]
    if not pairs:
        return
    a, b = data.draw(st.sampled_from(pairs))
    result = compile_repo(
        {"groups/g.yaml": GROUP, "pipelines/rand.yaml": pipeline_yaml(dag, extra_edges=[(b, a)])}
    )
    assert not result.ok
    cycles = [d for d in result.diagnostics if d.code == "CT205"]
    assert cycles
    g.add_edge(b, a)
    for d in cycles:
        names = d.message.removeprefix("cycle: ").split(" -> ")
        assert names[0] == names[-1]
        assert all(g.has_edge(x, y) for x, y in itertools.pairwise(names))


@st.composite
def multi_signal_dags(draw: st.DrawFn) -> dict[str, Any]:
    """One valid DAG per signal over a shared node pool; edges carry the signals of the DAGs using them."""
    pool_r = [f"r{i}" for i in range(3)]
    pool_p = [f"p{i}" for i in range(4)]
    pool_e = [f"e{i}" for i in range(3)]
    edges: dict[tuple[str, str], set[str]] = {}
    for signal in ("logs", "traces"):
        recv = draw(st.lists(st.sampled_from(pool_r), min_size=1, max_size=3, unique=True))
        proc = sorted(draw(st.lists(st.sampled_from(pool_p), max_size=4, unique=True)))
        exp = draw(st.lists(st.sampled_from(pool_e), min_size=1, max_size=3, unique=True))
        for i, p in enumerate(proc):
            edges.setdefault((draw(st.sampled_from(recv + proc[:i])), p), set()).add(signal)
            edges.setdefault((p, draw(st.sampled_from(proc[i + 1 :] + exp))), set()).add(signal)
        for r in recv:
            edges.setdefault((r, draw(st.sampled_from(proc + exp))), set()).add(signal)
        for e in exp:
            edges.setdefault((draw(st.sampled_from(recv + proc)), e), set()).add(signal)
    used = {n for edge in edges for n in edge}
    nodes = (
        [{"id": r, "class": "receiver", "type": "otlp"} for r in pool_r if r in used]
        + [{"id": p, "class": "processor", "type": "batch", "config": {"n": p}} for p in pool_p if p in used]
        + [
            {"id": e, "class": "exporter", "type": draw(st.sampled_from(EXPORTERS))}
            for e in pool_e
            if e in used
        ]
    )
    return {"nodes": nodes, "edges": {k: sorted(v) for k, v in sorted(edges.items())}}


@SETTINGS
@given(multi_signal_dags())
def test_multi_signal_graphs_render_each_signals_paths(dag: dict[str, Any]) -> None:
    doc = {
        "kind": "Pipeline",
        "name": "rand",
        "groups": ["g"],
        "signals": ["logs", "traces"],
        "nodes": dag["nodes"],
        "edges": [{"from": a, "to": b, "signals": sigs} for (a, b), sigs in dag["edges"].items()],
    }
    result = compile_repo({"groups/g.yaml": GROUP, "pipelines/rand.yaml": yaml.safe_dump(doc)})
    assert result.ok, [d.format_text() for d in result.diagnostics]
    pipelines = yaml.safe_load(result.configs["g"])["service"]["pipelines"]
    for signal in ("logs", "traces"):
        sub = {"nodes": dag["nodes"], "edges": [e for e, sigs in dag["edges"].items() if signal in sigs]}
        rendered = {k: v for k, v in pipelines.items() if k.startswith(f"{signal}/")}
        strip = lambda cid: cid.split(".", 1)[1]  # noqa: E731
        got = {
            (strip(r), tuple(strip(p) for p in spec["processors"]), strip(e))
            for spec in rendered.values()
            for r in spec["receivers"]
            for e in spec["exporters"]
        }
        assert got == graph_paths(sub)
