"""Benchmark: every UI page with 100,000 agents, 1,000 of them with 24 h of metrics and scraped live.

1. The store is filled through its own methods (two revisions of the example repo compiled by the real
   compiler, every agent registered and most reporting, reconcile runs), so the per-status counts are
   the ones the store maintains. The first 1,000 agents have a metrics URL on a simulated fleet (the
   agent-like pages of bench/scrape.py, counters growing with time).
2. The metrics store gets the last 24 h of those 1,000 agents at 15 s (5.8 M scrapes, bulk-inserted in
   the scraper's row format and rolled up as the server does); then the real server starts (granian
   workers plus the metrics process), and its metrics process scrapes the 1,000 agents every 15 s for
   the whole run: charts and fleet rates are drawn from real data while ingest goes on.
3. One logged-in client fetches each page sequentially (p50 / p95 / max over `--rounds`), and the
   metrics query API through the server's HTTP path (`GET /api/v1/metrics/query`: worker, proxy,
   metrics process, DuckDB) for one agent over 24 h and one group over 24 h.

Baseline, in the same run on the same server: `GET /api/health` (one SQLite read). Targets: every page
p95 < 200 ms (the fleet page `/` included, at 100,000 agents); metrics queries over HTTP p95 < 200 ms;
the scraper keeps up (no failed scrapes of the simulated fleet). Exit 1 when missed.

    .venv/bin/python bench/ui.py [--agents 100000] [--metric-agents 1000] [--rounds 20]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import numpy as np  # noqa: E402
from _record import Baseline, Run  # noqa: E402
from scrape import FLEET_SERVER, day_arrays, free_port, stop  # noqa: E402

from metrics.settings import DAY, MetricsSettings  # noqa: E402
from metrics.store import MetricsStore  # noqa: E402
from tests.support.server import ServerProcess  # noqa: E402
from tests.ui.demo_support import ui_login  # noqa: E402
from tests.ui.seed import SHA1, SHA2, add_runs, publish_example, register_agents  # noqa: E402
from webui.store import Store  # noqa: E402

GOAL_MS = 200.0
INTERVAL = 15.0


def fill(data_dir: Path, agents: int, metric_agents: int, fleet_port: int) -> tuple[list[str], list[str]]:
    """Fill state.db; return (ids of the agents with metrics, their groups)."""
    store = Store.open(data_dir / "state.db", poll_interval_s=3600.0)
    try:
        publish_example(store, SHA1, None)
        publish_example(store, SHA2, SHA1, tweak="second revision")
        fleet_url = f"http://127.0.0.1:{fleet_port}/metrics/"
        with_metrics = register_agents(
            store, metric_agents, prefix="metrics", metrics_url=lambda i: f"{fleet_url}{i}"
        )
        register_agents(store, agents - metric_agents)
        add_runs(store)
        group_of = {a.id: a.group or "" for a in store.get_agents(with_metrics)}
        return with_metrics, [group_of[i] for i in with_metrics]
    finally:
        store.close()


def seed_history(data_dir: Path, ids: list[str], groups: list[str], now: float) -> int:
    """The last 24 h of scrapes of these agents, as the scraper would have stored them; rolled up."""
    settings = MetricsSettings(data_dir=data_dir)
    store = MetricsStore(settings.db_path, memory_limit=settings.duckdb_memory_limit)
    try:
        arrays = day_arrays(len(ids), now - DAY, INTERVAL, 1, np.random.default_rng(7), ids, groups)
        rows = store.insert_arrays(arrays)
        store.rollup(now, settings.rollup_lag_s)
        return rows
    finally:
        store.close()  # DuckDB has one writer: the server's metrics process opens it next


def timed(client: httpx.Client, path: str, rounds: int) -> list[float]:
    samples = []
    for _ in range(rounds):
        start = time.perf_counter()
        response = client.get(path)
        samples.append((time.perf_counter() - start) * 1000)
        if response.status_code != 200:
            raise SystemExit(f"{path}: HTTP {response.status_code}: {response.text[:300]}")
    return samples


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def wait_for_live_scrapes(client: httpx.Client, agent: str, timeout_s: float) -> dict[str, object]:
    """Bounded wait until the metrics process has scraped `agent` (its latest values are not stale)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        r = client.get("/api/v1/metrics/latest", params={"agents": agent})
        if r.status_code == 200 and not r.json()["agents"][agent]["stale"]:
            return dict(r.json()["agents"][agent])
        time.sleep(1)
    raise SystemExit(f"the metrics process did not scrape {agent} within {timeout_s:.0f} s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--agents", type=int, default=100_000)
    parser.add_argument("--metric-agents", type=int, default=1_000)
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    run = Run("ui")
    fleet_port = free_port()
    fleet = subprocess.Popen(
        [sys.executable, "-c", FLEET_SERVER, str(args.metric_agents), str(fleet_port), "close"],
        stdout=subprocess.PIPE,
    )
    try:
        assert fleet.stdout is not None and fleet.stdout.readline().strip() == b"ready"
        with tempfile.TemporaryDirectory(prefix="ctrltower-bench-ui-") as tmp:
            data_dir = Path(tmp) / "server"
            data_dir.mkdir()
            started = time.perf_counter()
            ids, groups = fill(data_dir, args.agents, args.metric_agents, fleet_port)
            fill_s = time.perf_counter() - started
            started = time.perf_counter()
            rows = seed_history(data_dir, ids, groups, time.time())
            print(f"filled {args.agents:,} agents in {fill_s:.0f} s; {rows:,} scrapes of 24 h for "
                  f"{len(ids):,} agents in {time.perf_counter() - started:.0f} s")  # fmt: skip
            run.sample_load()
            with ServerProcess(
                data_dir, poll_interval_s=3600.0, workers=2, metrics=True, metrics_interval_s=INTERVAL
            ) as srv:
                srv.wait_metrics()
                measure(run, srv, ids, groups, args)
    finally:
        stop(fleet)
    return run.save()


def measure(
    run: Run, srv: ServerProcess, ids: list[str], groups: list[str], args: argparse.Namespace
) -> None:
    token = srv.admin_token
    client = ui_login(srv.base_url, token)
    try:
        client.headers["Authorization"] = f"Bearer {token}"
        agent = ids[len(ids) // 2]
        group = groups[len(ids) // 2]
        live = wait_for_live_scrapes(client, agent, 6 * INTERVAL)
        print(f"live scrapes: {agent} logs_in {live['logs_in']} /s")
        pages = [
            "/",
            "/?status=online&group=edge",
            "/?label=ring%3Dcanary&sync=Synced",
            "/?q=host-0999",
            f"/?offset={args.agents // 2}",
            f"/agents/{agent}",
            f"/agents/{agent}?range=24h",
            # the agent page's charts are images of their own, loaded in parallel by the browser;
            # held to the same goal (chart 2 = logs in + out: two metric queries)
            f"/agents/{agent}/charts/0.svg?range=1h",
            f"/agents/{agent}/charts/2.svg?range=1h",
            f"/agents/{agent}/charts/2.svg?range=24h",
            "/pipelines",
            "/pipelines/gateway-traces",
            f"/groups?group={group}",
            "/runs",
            "/tokens",
        ]
        queries = {
            "one agent, 24 h": f"/api/v1/metrics/query?metric=logs_in&agent={agent}&start=-24h",
            "one group, 24 h": f"/api/v1/metrics/query?metric=logs_in&group={group}&start=-24h",
        }
        for path in ["/api/health", *pages, *queries.values()]:  # warm every worker's caches and imports
            timed(client, path, 3)
        chart = client.get(f"/agents/{agent}/charts/2.svg?range=24h").text
        if "<polyline" not in chart and "<path" not in chart:
            run.fail("the 24 h chart of a scraped agent has no line: the metrics data did not reach the UI")
        base = timed(client, "/api/health", args.rounds * 2)
        base_p50 = statistics.median(base)
        print(f"baseline GET /api/health: p50 {base_p50:.1f} ms, p95 {pct(base, 0.95):.1f} ms")
        print(f"{'page':45} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8} {'x base':>7}")
        stats: dict[str, dict[str, float]] = {}
        for path in [*pages, *queries.values()]:
            samples = timed(client, path, args.rounds)
            p50, p95 = statistics.median(samples), pct(samples, 0.95)
            stats[path] = {"p50_ms": round(p50, 1), "p95_ms": round(p95, 1), "max_ms": round(max(samples), 1)}
            print(f"{path[:45]:45} {p50:8.1f} {p95:8.1f} {max(samples):8.1f} {p50 / base_p50:7.1f}")
            run.sample_load()
        health = client.get("/api/v1/metrics/health", params={"agents": ",".join(ids[:50])}).json()["agents"]
    finally:
        client.close()
    failing = sorted(a for a, h in health.items() if h and h["failing"])
    if failing:
        run.fail(f"scrapes of the simulated fleet failing: {failing[:5]}")
    baseline = Baseline("GET /api/health p95, same server", round(pct(base, 0.95), 1), "ms")
    fleet = stats["/"]
    run.figure(
        "fleet_page_p95_ms", f"fleet page `/` with {args.agents:,} agents", fleet["p95_ms"], "ms",
        baseline=baseline, target=f"p95 < {GOAL_MS:.0f} ms", met=fleet["p95_ms"] < GOAL_MS, readme=True,
        **fleet,
    )  # fmt: skip
    worst_path = max(pages, key=lambda p: stats[p]["p95_ms"])
    worst = stats[worst_path]["p95_ms"]
    run.figure(
        "worst_page_p95_ms",
        f"slowest UI page with {args.agents:,} agents ({len(ids):,} with 24 h of metrics)", worst, "ms",
        baseline=baseline, target=f"every page p95 < {GOAL_MS:.0f} ms", met=worst < GOAL_MS,
        readme=True, page=worst_path, pages=stats,
    )  # fmt: skip
    for name, path in queries.items():
        q = stats[path]
        run.figure(
            f"metrics_query_{name.split(',')[0].split()[-1]}_p95_ms",
            f"metrics query over HTTP while scraping {len(ids):,} agents, {name}", q["p95_ms"], "ms",
            baseline=baseline, target=f"p95 < {GOAL_MS:.0f} ms", met=q["p95_ms"] < GOAL_MS, readme=True, **q,
        )  # fmt: skip


if __name__ == "__main__":
    raise SystemExit(main())
