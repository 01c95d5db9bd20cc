"""The logs-in rate a user sees (the fleet page and the metrics API) is the rate logs are written at,
within 5 %, after each of several collector reloads (new revisions through the real reconciler) and
after the collector is killed with SIGKILL: the real agent, collector, sink, server and its metrics
process, with the demo's log generator writing at a known rate."""

from __future__ import annotations

import os
import re
import signal
import time
from pathlib import Path

import pytest

from tests.e2e.harness import System, running_system
from tests.reconciler.gitutil import commit, edit, head
from tests.support.procs import alive, descendants

pytestmark = [pytest.mark.collector, pytest.mark.slow, pytest.mark.timeout(1800)]

RATE = 40.0  # lines per second written by the log generator (it keeps to the clock)
TOLERANCE = 0.05
# The API's and the fleet page's rate is over the scrapes of the last 2 x interval + 5 s (65 s here),
# from the first to the last scrape in it: 2 or 3 scrapes, so the span can be a single interval. The
# agent reads the collector's counters once a second, so each end can be up to 1 s stale: a reading can
# be off by 1 s / interval. At 12 s that is 8 % (seen: 36.8/s for 40/s); at 30 s it is 3.3 %, inside 5 %.
SCRAPE_INTERVAL_S = 30.0
WINDOW_S = 2 * SCRAPE_INTERVAL_S + 5.0  # metrics.settings: stale_after_s
READINGS = 2
CELL = re.compile(r'<td class="num" data-metric="logs_in">\s*([0-9.]+)\s*</td>')


def collector_pids(system: System) -> set[int]:
    found = set()
    for pid in descendants(system.agent.pid):
        try:
            if b"otelcol-contrib" in Path(f"/proc/{pid}/cmdline").read_bytes():
                found.add(pid)
        except OSError:
            continue
    return {p for p in found if alive(p)}


def shown_rates(system: System, agent_id: str) -> tuple[float | None, float | None, float]:
    """(metrics API latest logs_in, the fleet page's logs-in cell, time of the newest scrape)."""
    latest = system.get("/api/v1/metrics/latest", agents=agent_id)["agents"][agent_id]
    cell = CELL.search(system.ui_page("/"))
    return latest["logs_in"], (float(cell[1]) if cell else None), float(latest["ts"] or 0)


def within(value: float | None) -> bool:
    return value is not None and abs(value - RATE) <= TOLERANCE * RATE


def assert_rate_recovered(system: System, agent_id: str, what: str, since: float) -> None:
    """Once a reading's whole window lies after `since` (the moment the collector ran again), each of
    READINGS readings of both the API and the fleet page, each after a new scrape, is within 5 % of
    the written rate."""
    seen = since + WINDOW_S
    api, ui = [], []
    for _ in range(READINGS):
        a, u, ts = system.wait(
            f"a scrape after {what}", lambda seen=seen: (r := shown_rates(system, agent_id))[2] > seen and r
        )
        assert a is not None and u is not None, (what, a, u)
        api.append(a)
        ui.append(u)
        seen = ts
    assert all(within(v) for v in api), (what, api)
    assert all(within(v) for v in ui), (what, ui)


def applied(system: System, sha: str) -> bool:
    view = system.agent_view()
    return view.get("effective_revision") == sha and view.get("sync_status") == "Synced"


def new_collector(system: System, before: set[int]) -> set[int]:
    pids = collector_pids(system)
    return pids if pids and not pids & before else set()


def test_logs_in_rate_matches_the_injected_rate_across_reloads_and_kill(
    tmp_path: Path, collector_bin: Path
) -> None:
    with running_system(
        tmp_path, collector_bin, rate=RATE, metrics=True, metrics_interval_s=SCRAPE_INTERVAL_S
    ) as system:
        view = system.wait("the agent Synced", lambda: (
            v if (v := system.agent_view()).get("sync_status") == "Synced" else None))  # fmt: skip
        agent_id = view["id"]
        assert_rate_recovered(system, agent_id, "the first start", time.time())

        for n, timeout in enumerate(("1s", "3s"), start=1):  # reloads: a new revision each
            edit(system.repo, "groups/edge.yaml", "batch_timeout: ", f"batch_timeout: {timeout} #")
            sha = commit(system.repo, f"reload {n}: batch timeout {timeout}")
            code, report = system.reconcile()
            assert code == 0, report
            system.wait(f"revision {n} applied", lambda sha=sha: applied(system, sha))
            assert_rate_recovered(system, agent_id, f"reload {n}", time.time())
        assert head(system.repo) == system.current_revision()

        before = collector_pids(system)
        assert len(before) == 1
        os.kill(next(iter(before)), signal.SIGKILL)
        system.wait("a new collector after kill -9", lambda: new_collector(system, before))
        assert_rate_recovered(system, agent_id, "kill -9 of the collector", time.time())
