"""What the metrics process reads from the server's store (webui/store/scrape.py): scrape targets and
chart markers. Results pinned against a Python oracle on both backends; on SQLite, the query plans use
the indexes of migration 12 (an agent's applies by (agent, kind, time), targets from the partial index
of agents with a metrics URL), not a walk of every agent or every agent's applies.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from schemas.api import AgentRegistration, ApplyResult, StatusReport
from tests.ui.seed import TIERS, example_revision
from tests.webui.conftest import Clock
from webui.store import Store
from webui.store.scrape import annotations_query

AGENTS = 12


@pytest.fixture
def store(tmp_path: Path, clock: Clock, backend: str | None) -> Iterator[Store]:
    s = Store.open(
        tmp_path / "state.db" if backend is None else None,
        database_url=backend,
        poll_interval_s=10.0,
        clock=clock,
    )
    try:
        s.publish(example_revision("a" * 40, None), actor="t", role="reconciler")
        yield s
    finally:
        s.close()


def _fill(store: Store, clock: Clock) -> list[str]:
    """Agents with and without metrics URLs, each applying (or failing) a config a few times."""
    ids = []
    for i in range(AGENTS):
        url = None if i % 3 == 0 else f"http://127.0.0.1:9/metrics/{i}"
        reg = AgentRegistration(
            instance_id=f"inst-{i:04d}", hostname=f"host-{i}", labels=dict(TIERS[i % 4]), metrics_url=url
        )
        ids.append(store.register_agent(reg).agent_id)
        clock.advance(3.0)
    for rnd in range(3):
        for i, agent_id in enumerate(ids):
            view = store.get_agent(agent_id)
            result = "failed" if (i + rnd) % 4 == 0 else "applied"
            at = datetime.fromtimestamp(clock(), UTC)
            store.report_status(
                agent_id,
                StatusReport(
                    collector_state="running",
                    last_apply=ApplyResult(
                        result=result, config_hash=f"{rnd}{i:063d}", revision=view.desired_revision, at=at
                    ),
                    uptime_s=1.0,
                ),
            )
            clock.advance(1.0)
    return ids


def test_scrape_targets_are_the_agents_with_a_url_seen_lately(store: Store, clock: Clock) -> None:
    ids = _fill(store, clock)
    with store.db.write() as conn:  # an empty URL (as an import might write it) is no target
        conn.execute("UPDATE agents SET metrics_url = '' WHERE id = ?", (ids[1],))
        conn.execute("UPDATE agents SET last_seen = ? WHERE id = ?", (clock() - 500, ids[2]))
    views = {a.id: a for a in store.get_agents(ids)}
    since = clock() - 100
    expected = sorted(
        i
        for i, a in views.items()
        if a.metrics_url and a.last_seen is not None and a.last_seen.timestamp() >= since
    )
    got = store.scrape_targets(since)
    assert [t.agent_id for t in got] == expected
    assert len(expected) == AGENTS - AGENTS // 3 - 2  # no URL, an empty one, one silent
    assert all(t.url == views[t.agent_id].metrics_url and t.group == views[t.agent_id].group for t in got)


def test_an_agents_markers_are_its_applies_in_the_range(store: Store, clock: Clock) -> None:
    ids = _fill(store, clock)
    every = {
        agent_id: [e for e in reversed(store.agent_events(agent_id, limit=100).items) if e.kind == "applied"]
        for agent_id in ids
    }
    assert sum(len(v) for v in every.values()) >= 2 * AGENTS  # most reports applied
    start, end = every[ids[5]][0].at.timestamp(), every[ids[5]][-1].at.timestamp()  # [start, end)
    for agent_id in ids:
        got = store.applied_revisions(start, end, agent=agent_id, group=None, limit=500)
        expected = [
            (e.at.timestamp(), e.revision) for e in every[agent_id] if start <= e.at.timestamp() < end
        ]
        assert [(a.at, a.revision) for a in got] == expected
        assert all(a.agent_id == agent_id for a in got)
    assert (
        len(store.applied_revisions(start, end, agent=ids[5], group=None, limit=500))
        == len(every[ids[5]]) - 1
    )
    assert store.applied_revisions(start, end, agent=ids[5], group=None, limit=1)[0].at == start
    # a group's markers: the applies of its current agents, oldest first
    edge = sorted(
        (e.at.timestamp(), a.id)
        for a in store.get_agents(ids)
        if a.group == "edge"
        for e in every[a.id]
        if start <= e.at.timestamp() < end
    )
    got_group = store.applied_revisions(start, end, agent=None, group="edge", limit=500)
    assert sorted((a.at, a.agent_id) for a in got_group) == edge and edge


def _plan(store: Store, sql: str, args: tuple[object, ...]) -> str:
    rows = store.db.conn().execute("EXPLAIN QUERY PLAN " + sql, args).fetchall()
    return "\n".join(str(r["detail"]) for r in rows)


def test_sqlite_plans_use_the_indexes(tmp_path: Path, clock: Clock) -> None:
    store = Store.open(tmp_path / "state.db", poll_interval_s=10.0, clock=clock)
    try:
        store.publish(example_revision("a" * 40, None), actor="t", role="reconciler")
        ids = _fill(store, clock)
        sql, args = annotations_query(clock() - 60, clock(), agent=ids[0], group=None, limit=500)
        plan = _plan(store, sql, args)
        assert "agent_events_agent_kind_at (agent_id=? AND kind=? AND at>? AND at<?)" in plan, plan
        assert "TEMP B-TREE" not in plan, plan
        conn = store.db.conn()
        statements: list[str] = []
        conn.set_trace_callback(statements.append)
        try:
            store.scrape_targets(clock() - 100)
        finally:
            conn.set_trace_callback(None)
        (targets,) = [s for s in statements if "metrics_url" in s]
        plan = _plan(store, targets, ())
        assert "agents_scraped" in plan and "TEMP B-TREE" not in plan, plan
    finally:
        store.close()
