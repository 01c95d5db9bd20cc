"""Benchmark: validate + render a generated repo of 1,000 pipelines (10 nodes each) and 200 groups.

Prints the compiler's time and its ratio to a floor measured in the same run on the same data:
PyYAML's C loader over every input file plus PyYAML's C dumper over every rendered config (the least
any YAML-in, YAML-out tool must do). Targets: ratio <= 3 and total < 5 s. Best of N runs each.

    .venv/bin/python bench/compile.py [--pipelines 1000] [--groups 200] [--runs 3]
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _record import Baseline, Run

from compiler.api import compile_repo

RECEIVERS = ["filelog", "otlp"]
PROCESSORS = ["batch", "attributes", "memory_limiter", "filter", "transform", "resourcedetection"]
EXPORTERS = ["otlphttp", "debug"]


def generate(n_pipelines: int, n_groups: int, seed: int = 7) -> dict[str, str]:
    rnd = random.Random(seed)
    files: dict[str, str] = {}
    groups = [f"group-{i:03d}" for i in range(n_groups)]
    for i, g in enumerate(groups):
        files[f"groups/{g}.yaml"] = yaml.safe_dump(
            {
                "kind": "AgentGroup",
                "name": g,
                "selector": {"tier": f"t{i % 10}", "zone": f"z{i}"},
                "priority": i % 7,
                "vars": {
                    "endpoint": f"https://otlp-{i}.example.com",
                    "timeout": f"{1 + i % 5}s",
                    "mib": 100 + i,
                },
            },
            sort_keys=False,
        )
    for i in range(n_pipelines):
        name = f"pipe-{i:04d}"
        signal = ("logs", "metrics", "traces")[i % 3]
        nodes = [
            {
                "id": "in1",
                "class": "receiver",
                "type": "otlp",
                "config": {"protocols": {"http": {"endpoint": f"127.0.0.1:{10000 + i}"}}},
            },
            {
                "id": "in2",
                "class": "receiver",
                "type": "otlp",
                "config": {"protocols": {"grpc": {"endpoint": f"127.0.0.1:{20000 + i}"}}},
            },
            {
                "id": "limit",
                "class": "processor",
                "type": "memory_limiter",
                "config": {"check_interval": "1s", "limit_mib": "{{ vars.mib }}"},
            },
            {
                "id": "attrs",
                "class": "processor",
                "type": "attributes",
                "config": {"actions": [{"key": "pipeline", "value": name, "action": "upsert"}]},
            },
            {
                "id": "detect",
                "class": "processor",
                "type": "resourcedetection",
                "config": {"detectors": ["env", "system"]},
            },
            {"id": "xform", "class": "processor", "type": "transform", "config": {"error_mode": "ignore"}},
            {
                "id": "batch1",
                "class": "processor",
                "type": "batch",
                "config": {"timeout": "{{ vars.timeout }}"},
            },
            {"id": "batch2", "class": "processor", "type": "batch", "config": {"send_batch_size": 1024}},
            {
                "id": "ship",
                "class": "exporter",
                "type": "otlphttp",
                "config": {"endpoint": "{{ vars.endpoint }}", "headers": {"x-pipeline": name}},
            },
            {"id": "debug", "class": "exporter", "type": "debug", "config": {"verbosity": "basic"}},
        ]
        edges = [
            ("in1", "limit"), ("in2", "limit"), ("limit", "attrs"), ("attrs", "detect"), ("detect", "xform"),
            ("xform", "batch1"), ("xform", "batch2"), ("batch1", "ship"), ("batch2", "debug"),
        ]  # fmt: skip
        files[f"pipelines/{name}.yaml"] = yaml.safe_dump(
            {
                "kind": "Pipeline",
                "name": name,
                "groups": sorted(rnd.sample(groups, k=rnd.randint(1, 2))),
                "signals": [signal],
                "nodes": nodes,
                "edges": [{"from": a, "to": b} for a, b in edges],
            },
            sort_keys=False,
        )
    return files


def best(fn: object, runs: int) -> tuple[float, float]:
    """Best wall-clock and best CPU time over runs (CPU time is what a shared machine cannot inflate)."""
    walls, cpus = [], []
    for _ in range(runs):
        w0, c0 = time.perf_counter(), time.process_time()
        fn()  # type: ignore[operator]
        walls.append(time.perf_counter() - w0)
        cpus.append(time.process_time() - c0)
    return min(walls), min(cpus)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pipelines", type=int, default=1000)
    ap.add_argument("--groups", type=int, default=200)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    run = Run("compile")

    files = generate(args.pipelines, args.groups)
    result = compile_repo(files)
    if not result.ok:
        run.fail(f"generated repo does not compile: {[d.format_text() for d in result.diagnostics[:5]]}")
        return run.save()
    rendered = [yaml.load(text, Loader=yaml.CSafeLoader) for text in result.configs.values()]
    inputs = list(files.values())

    def floor() -> None:
        for text in inputs:
            yaml.load(text, Loader=yaml.CSafeLoader)
        for doc in rendered:
            yaml.dump(doc, Dumper=yaml.CSafeDumper, sort_keys=False, default_flow_style=False)

    def compiler() -> None:
        compile_repo(files)

    t_floor, c_floor = best(floor, args.runs)
    t_compile, c_compile = best(compiler, args.runs)
    ratio = t_compile / t_floor
    in_bytes = sum(len(t) for t in inputs)
    out_bytes = sum(len(t) for t in result.configs.values())
    print(
        f"repo: {args.pipelines} pipelines x 10 nodes, {args.groups} groups; "
        f"input {in_bytes / 1e6:.1f} MB, output {out_bytes / 1e6:.1f} MB in {len(result.configs)} configs"
    )
    print(f"floor (PyYAML C load of inputs + C dump of outputs): {t_floor:.3f} s wall, {c_floor:.3f} s CPU")
    print(
        f"compile_repo (load, validate, render, hash):        {t_compile:.3f} s wall, {c_compile:.3f} s CPU"
    )
    print(f"ratio: {ratio:.2f}x wall, {c_compile / c_floor:.2f}x CPU (target <= 3x)")
    print(f"total: {t_compile:.2f} s wall, {c_compile:.2f} s CPU (target < 5 s)")
    # The ratio is judged on wall time (both sides run in this process, one after the other); the 5 s
    # bound on CPU time too, because other engineers' work on this shared machine inflates wall time.
    run.figure(
        "compile_s", f"validate + render {args.pipelines:,} pipelines, {args.groups} groups",
        round(t_compile, 3), "s",
        baseline=Baseline("PyYAML C load + dump of the same data", round(t_floor, 3), "s"),
        target="<= 3x the baseline and < 5 s", met=ratio <= 3.0 and min(t_compile, c_compile) < 5.0,
        readme=True, cpu_s=round(c_compile, 3), baseline_cpu_s=round(c_floor, 3), runs=args.runs,
        input_bytes=in_bytes, output_bytes=out_bytes,
    )  # fmt: skip
    return run.save()


if __name__ == "__main__":
    raise SystemExit(main())
