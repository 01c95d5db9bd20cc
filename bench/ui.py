"""Benchmark: every UI page with 10,000 agents in the store, served by the real `ctrltower server`.

Fills a fresh data dir through the store's own methods (two revisions of the example repo compiled
by the real compiler, 10,000 agents registered and reporting, reconcile runs), starts the real
server (granian workers + the metrics process) on 127.0.0.1, logs in through the UI's login form and
fetches each page sequentially. Baseline, measured in the same run on the same server: `GET
/api/health` (a route that only touches SQLite), so the ratio says what a page costs beyond the
framework and the network. Goal: every page p95 < 200 ms.

    python bench/ui.py [--agents 10000] [--rounds 20]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from tests.support.server import ServerProcess  # noqa: E402
from tests.ui.demo_support import ui_login  # noqa: E402
from tests.ui.seed import SHA1, SHA2, add_runs, publish_example, register_agents  # noqa: E402
from webui.store import Store  # noqa: E402

GOAL_MS = 200.0


def fill(data_dir: Path, agents: int) -> list[str]:
    store = Store.open(data_dir / "state.db", poll_interval_s=3600.0)
    try:
        publish_example(store, SHA1, None)
        publish_example(store, SHA2, SHA1, tweak="second revision")
        ids = register_agents(store, agents)
        add_runs(store)
        return ids
    finally:
        store.close()


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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--agents", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ctrltower-bench-ui-") as tmp:
        data_dir = Path(tmp) / "server"
        data_dir.mkdir()
        started = time.perf_counter()
        ids = fill(data_dir, args.agents)
        print(f"filled {args.agents} agents in {time.perf_counter() - started:.1f} s")
        # poll interval 1 h: the seeded agents stay online for the whole run (no agents report here)
        with ServerProcess(data_dir, poll_interval_s=3600.0, workers=2, metrics=True) as srv:
            token = srv.admin_token
            client = ui_login(srv.base_url, token)
            try:
                middle = ids[len(ids) // 2]
                pages = [
                    "/",
                    "/?status=online&group=edge",
                    "/?label=ring%3Dcanary&sync=Synced",
                    "/?q=host-0999",
                    f"/?offset={args.agents // 2}",
                    f"/agents/{middle}",
                    f"/agents/{middle}?range=7d",
                    # the agent page's charts are images of their own, loaded in parallel by the browser;
                    # held to the same goal (chart 2 = logs in + out: two metric queries)
                    f"/agents/{middle}/charts/0.svg?range=1h",
                    f"/agents/{middle}/charts/2.svg?range=1h",
                    f"/agents/{middle}/charts/2.svg?range=7d",
                    "/pipelines",
                    "/pipelines/gateway-traces",
                    "/groups?group=edge",
                    "/runs",
                    "/tokens",
                ]
                # not a page: one metrics query as the agent page makes it (it makes one per chart series)
                extra = [f"/api/v1/metrics/query?metric=cpu&agent={middle}&start=-1h"]
                client.headers["Authorization"] = f"Bearer {token}"
                for path in ["/api/health", *pages, *extra]:  # warm up every worker's caches and imports
                    timed(client, path, 3)
                base = timed(client, "/api/health", args.rounds * 2)
                base_p50 = statistics.median(base)
                print(f"baseline GET /api/health: p50 {base_p50:.1f} ms, p95 {pct(base, 0.95):.1f} ms")
                print(f"{'page':45} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8} {'x base':>7}")
                worst = 0.0
                for path in [*pages, *extra]:
                    samples = timed(client, path, args.rounds)
                    p50, p95 = statistics.median(samples), pct(samples, 0.95)
                    worst = max(worst, p95) if path in pages else worst
                    print(f"{path[:45]:45} {p50:8.1f} {p95:8.1f} {max(samples):8.1f} {p50 / base_p50:7.1f}")
            finally:
                client.close()
    verdict = "OK" if worst < GOAL_MS else "OVER GOAL"
    print(f"worst page p95 {worst:.1f} ms with {args.agents} agents (goal < {GOAL_MS:.0f} ms): {verdict}")
    return 0 if worst < GOAL_MS else 1


if __name__ == "__main__":
    raise SystemExit(main())
