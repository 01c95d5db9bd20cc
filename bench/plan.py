"""Benchmark: `plan` for a one-pipeline change vs a full render, and a no-op reconcile.

On the repo bench/compile.py generates (1,000 pipelines of 10 nodes, 200 groups; a Git repo in a temp dir):

- baseline: a full render (compile_repo of the head commit's files, every group) in this same run;
- plan: `build_plan(base, head)` for a change to one pipeline, reading both commits from Git;
  goal: at most 10% of the full render (the ratio is printed);
- no-op reconcile: `reconcile_once` of the commit the real server already serves
  (`ctrltower server` on 127.0.0.1); goal: under 0.5 s.

Run: `.venv/bin/python bench/plan.py` (or `make bench`). Exit 1 when a goal is missed.
"""

from __future__ import annotations

import os
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from _record import Baseline, Run  # noqa: E402
from compile import generate  # noqa: E402

from compiler.api import compile_repo  # noqa: E402
from reconciler.client import ControlClient, make_http_client  # noqa: E402
from reconciler.git import GitRepo  # noqa: E402
from reconciler.plan import build_plan  # noqa: E402
from reconciler.run import ReconcileSettings, reconcile_once  # noqa: E402
from tests.reconciler.gitutil import git  # noqa: E402

PIPELINES = 1000
GROUPS = 200
REPEAT = 5
CHANGED = "pipelines/pipe-0500.yaml"


def generate_repo(root: Path, pipelines: int = PIPELINES, groups: int = GROUPS) -> tuple[str, str]:
    """Write and commit the compile benchmark's repo (base), change one pipeline (head); return the SHAs.

    The same generated repo as bench/compile.py (1,000 pipelines of 10 nodes, 200 groups, each pipeline
    in 1-2 groups), so the plan is compared with the full render that benchmark measures.
    """
    root.mkdir(parents=True)
    git(root, "init", "-q", "-b", "main")
    for rel, text in generate(pipelines, groups).items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "generated")
    base = git(root, "rev-parse", "HEAD")
    target = root / CHANGED
    text = target.read_text()
    assert "send_batch_size: 1024" in text
    target.write_text(text.replace("send_batch_size: 1024", "send_batch_size: 2048"))
    git(root, "commit", "-q", "-am", "one pipeline changes")
    # A clone (the CI checkout, the reconciler's cache) holds packed objects; a repo committed
    # locally holds 1,000 loose ones, which git reads several times slower. Pack, like a clone.
    git(root, "repack", "-adq")
    return base, git(root, "rev-parse", "HEAD")


def cpu_now() -> float:
    """CPU seconds of this process and its reaped children (the git processes)."""
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def best_of(fn: Callable[[], object], repeat: int = REPEAT) -> tuple[float, float]:
    """(best wall seconds, best CPU seconds) over `repeat` runs."""
    walls, cpus = [], []
    for _ in range(repeat):
        c0, t0 = cpu_now(), time.perf_counter()
        fn()
        walls.append(time.perf_counter() - t0)
        cpus.append(cpu_now() - c0)
    return min(walls), min(cpus)


def main() -> int:
    run = Run("plan")
    with tempfile.TemporaryDirectory(prefix="ctrltower-bench-") as tmp:
        repo_dir = Path(tmp) / "cfg"
        base, head = generate_repo(repo_dir)
        with GitRepo.open(repo_dir) as repo:
            files = repo.read_files(head)
        full = compile_repo(files)
        assert full.ok, [d.format_text() for d in full.diagnostics[:5]]
        assert len(full.configs) == GROUPS
        changed_groups = sorted(yaml.safe_load(files[CHANGED])["groups"])

        phases: list[dict[str, float]] = []

        def plan_once() -> None:
            with GitRepo.open(repo_dir) as repo:  # a fresh repo object: no blob cache carried over
                plan = build_plan(repo, base, head)
            assert sorted(c.group for c in plan.changes) == changed_groups, plan.changes
            phases.append(plan.timings_s)

        full_wall, full_cpu = best_of(lambda: compile_repo(files))
        plan_wall, plan_cpu = best_of(plan_once)
        ratio_wall, ratio_cpu = plan_wall / full_wall, plan_cpu / full_cpu
        load = os.getloadavg()[0]
        print(f"repo: {PIPELINES} pipelines, {GROUPS} groups; best of {REPEAT}; load average {load:.1f}")
        print(
            f"full render (baseline):       wall {full_wall * 1000:8.1f} ms   CPU {full_cpu * 1000:8.1f} ms"
        )
        print(
            f"plan, one-pipeline change:    wall {plan_wall * 1000:8.1f} ms   CPU {plan_cpu * 1000:8.1f} ms"
        )
        print(
            f"ratio plan / full render:     wall {ratio_wall:8.3f}      CPU {ratio_cpu:8.3f}  (goal <= 0.1)"
        )
        fastest = min(phases, key=lambda p: sum(p.values()))
        print(
            "plan phases, wall (fastest):  " + ", ".join(f"{k} {v * 1000:.1f} ms" for k, v in fastest.items())
        )
        # Wall time on a shared machine includes other people's work; CPU time (ours plus the git
        # processes') is the cost of the work itself. The goal is judged on CPU, wall is shown.
        run.figure(
            # judged on CPU (ours plus the git processes'): the figure and its baseline are CPU time
            "plan_cpu_ms", "`plan` of a one-pipeline change in that repo (CPU)", round(plan_cpu * 1000, 1),
            "ms", baseline=Baseline("full render of the same repo (CPU)", round(full_cpu * 1000, 1), "ms"),
            ratio=ratio_cpu, target="ratio <= 0.10", met=ratio_cpu <= 0.10, readme=True,
            wall_ms=round(plan_wall * 1000, 1), baseline_wall_ms=round(full_wall * 1000, 1),
            wall_ratio=round(ratio_wall, 4), changed_groups=changed_groups, repeat=REPEAT,
        )  # fmt: skip

        noop_s = bench_noop_reconcile(Path(tmp), repo_dir)
        print(f"no-op reconcile (median):     {noop_s * 1000:8.1f} ms  (goal < 500 ms)")
        run.figure(
            "noop_reconcile_ms", "no-op reconcile of the published commit", round(noop_s * 1000, 1), "ms",
            target="< 500 ms", met=noop_s < 0.5, readme=True,
        )  # fmt: skip
    return run.save()


def bench_noop_reconcile(tmp: Path, repo_dir: Path) -> float:
    sys.path.insert(0, str(ROOT))
    from tests.support.server import ServerProcess

    with ServerProcess(tmp / "server", poll_interval_s=5.0) as srv:
        token = srv.create_token("reconciler", "bench")
        settings = ReconcileSettings(source=str(repo_dir), ref="main", cache_dir=tmp / "cache")
        with ControlClient(make_http_client(srv.base_url, token)) as client:
            first = reconcile_once(settings, client, environ=os.environ)
            assert first.outcome == "published", first.message
            times = []
            for _ in range(REPEAT):
                t0 = time.perf_counter()
                result = reconcile_once(settings, client, environ=os.environ)
                times.append(time.perf_counter() - t0)
                assert result.outcome == "unchanged" and result.reported, result.message
    return statistics.median(times)


if __name__ == "__main__":
    sys.exit(main())
