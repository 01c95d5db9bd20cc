"""The fleet list's pages (webui/store/agents.py `list_agents`): the same rows, order, totals and counts
whichever path computes them, and (SQLite) query plans that walk the indexes of migration 12.

Two oracles: the fleet view evaluated for every agent and filtered, sorted and sliced in Python (for the
hostname order, whose ties are broken by id on both backends), and the query the store ran before the
page was picked by id (`page_rows` over the whole view), for every sort, including the ones where the
backends place NULLs differently.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from schemas.api import AgentRegistration, AgentView, ApplyResult, StatusReport
from tests.ui.seed import TIERS, example_revision
from tests.webui.conftest import Clock
from webui.store import AgentFilter, Store
from webui.store.agents import _agent_view_sql
from webui.store.base import page_rows

AGENTS = 37
ORDERS = {
    "hostname": "hostname, id",
    "last_seen": "last_seen DESC, id",
    "registered": "registered_at DESC, id",
    "group": "group_name, hostname, id",
}
FILTERS = [
    AgentFilter(),
    AgentFilter(group="edge"),
    AgentFilter(group="gateway", status="online"),
    AgentFilter(group="edge", status="offline"),
    AgentFilter(group="edge", status="degraded"),
    AgentFilter(status="online"),
    AgentFilter(status="offline"),
    AgentFilter(sync_status="Synced"),
    AgentFilter(sync_status="ApplyFailed", group="edge"),
    AgentFilter(labels=(("ring", "canary"),)),
    AgentFilter(labels=(("tier", "edge"),), status="online"),
    AgentFilter(search="host-001"),
    AgentFilter(search="host-00", group="edge"),
    AgentFilter(group="no-such-group"),
]


@pytest.fixture
def fleet(tmp_path: Path, clock: Clock, failing: set[str], backend: str | None) -> Iterator[Store]:
    """A fleet in every run status and most sync statuses: some agents never report (and go offline
    when the clock moves on), some fail to apply, some scrapes fail (degraded); hostnames repeat so
    the id breaks ties."""
    store = Store.open(
        tmp_path / "state.db" if backend is None else None,
        database_url=backend,
        poll_interval_s=10.0,
        clock=clock,
        scrape_failing=lambda: failing,
    )
    try:
        store.publish(example_revision("a" * 40, None), actor="t", role="reconciler")
        ids = []
        for i in range(AGENTS):
            labels = dict(TIERS[i % len(TIERS)]) | {"zone": f"z{i % 3}"}
            reg = AgentRegistration(instance_id=f"inst-{i:03d}", hostname=f"host-{i % 30:03d}", labels=labels)
            ids.append(store.register_agent(reg).agent_id)
            if i < 12:
                clock.advance(7.0)  # the first ones stop reporting: offline once past 30 s
        for i, agent_id in enumerate(ids):
            view = store.get_agent(agent_id)
            if i < 12 or view.desired_hash is None:
                continue
            failed = i % 4 == 0
            store.report_status(
                agent_id,
                StatusReport(
                    collector_state="running",
                    effective_config_hash=None if failed else view.desired_hash,
                    last_apply=ApplyResult(
                        result="failed" if failed else "applied",
                        config_hash=view.desired_hash,
                        at=datetime.fromtimestamp(clock(), UTC),
                    ),
                    uptime_s=1.0,
                ),
            )
        failing.update(ids[20:23])  # scrapes failing: degraded
        yield store
    finally:
        store.close()


def _every_agent(store: Store) -> list[AgentView]:
    ids = [str(r[0]) for r in store.db.conn().execute("SELECT id FROM agents").fetchall()]
    return store.get_agents(ids)


def _matches(a: AgentView, f: AgentFilter, *, with_status: bool = True) -> bool:
    q = f.search
    return (
        (f.group is None or a.group == f.group)
        and (not with_status or f.status is None or a.status == f.status)
        and (f.sync_status is None or a.sync_status == f.sync_status)
        and all(a.labels.get(k) == v for k, v in f.labels)
        and (not q or q in a.hostname or q in a.id or q in a.instance_id)
    )


def _before(store: Store, f: AgentFilter, order: str, limit: int, offset: int) -> tuple[list[str], int]:
    """The page as the store computed it before ids-first paging: the whole view, filtered and sorted."""
    params: dict[str, Any] = {
        "cutoff": store.clock() - store.offline_after_s,
        "failing": json.dumps(sorted(store._failing_agents())),
    }
    where, fparams = store._filter_sql(f, with_status=True)
    with store.db.read() as conn:
        rows, page = page_rows(
            conn, _agent_view_sql(store.db.dialect), where, {**params, **fparams}, order, limit=limit,
            offset=offset,
        )  # fmt: skip
    return [str(r["id"]) for r in rows], page.total


def test_pages_match_a_scan_of_every_agent(fleet: Store) -> None:
    everyone = _every_agent(fleet)
    statuses = {a.status for a in everyone}
    assert statuses == {"online", "offline", "degraded"}, statuses  # the fixture covers every status
    for f in FILTERS:
        matching = sorted((a for a in everyone if _matches(a, f)), key=lambda a: (a.hostname, a.id))
        counted = [a for a in everyone if _matches(a, f, with_status=False)]
        expected_counts: dict[str, int] = {"online": 0, "degraded": 0, "offline": 0}
        for a in counted:
            expected_counts[a.status] += 1
            expected_counts[a.sync_status] = expected_counts.get(a.sync_status, 0) + 1
        for limit, offset in ((50, 0), (5, 0), (5, 5), (7, 14), (5, max(0, len(matching) - 2)), (5, 500)):
            got = fleet.list_agents(f, limit=limit, offset=offset)
            assert [a.id for a in got.items] == [a.id for a in matching[offset : offset + limit]], (f, offset)
            assert got.page.total == len(matching), f
            assert (got.page.limit, got.page.offset) == (limit, offset)
            assert {k: v for k, v in got.counts.items() if v} == {
                k: v for k, v in expected_counts.items() if v
            }, f
        if f == AgentFilter():
            assert len(matching) == AGENTS


@pytest.mark.parametrize("sort", sorted(ORDERS))
def test_every_sort_pages_as_before(fleet: Store, sort: str) -> None:
    for f in FILTERS:
        for limit, offset in ((50, 0), (4, 0), (4, 9), (6, 30), (5, 500)):
            got = fleet.list_agents(f, limit=limit, offset=offset, sort=sort)
            ids, total = _before(fleet, f, ORDERS[sort], limit, offset)
            assert [a.id for a in got.items] == ids, (f, sort, offset)
            assert got.page.total == total


def _plans(store: Store, f: AgentFilter, offset: int = 0) -> dict[str, str]:
    """Each SELECT on agents that list_agents ran, with SQLite's query plan for it."""
    conn = store.db.conn()
    statements: list[str] = []
    conn.set_trace_callback(statements.append)
    try:
        store.list_agents(f, offset=offset)
    finally:
        conn.set_trace_callback(None)
    plans = {}
    for sql in statements:
        if sql.lstrip().upper().startswith(("SELECT", "WITH")) and "agents" in sql:
            rows = conn.execute("EXPLAIN QUERY PLAN " + sql).fetchall()
            plans[sql] = "\n".join(str(r["detail"]) for r in rows)
    return plans


def test_group_pages_walk_the_group_indexes(tmp_path: Path, clock: Clock) -> None:
    """SQLite: a group's page is read in index order (no sort of the group's agents) and its offline
    count ranges over (group, last_seen); an offset page skips entries of agents_search."""
    store = Store.open(tmp_path / "state.db", poll_interval_s=10.0, clock=clock)
    try:
        store.publish(example_revision("a" * 40, None), actor="t", role="reconciler")
        for i in range(20):
            labels = dict(TIERS[i % len(TIERS)])
            store.register_agent(
                AgentRegistration(instance_id=f"inst-{i:04d}", hostname=f"host-{i}", labels=labels)
            )
        group = _plans(store, AgentFilter(group="edge", status="online"))
        page = [p for sql, p in group.items() if "ORDER BY hostname" in sql]
        assert len(page) == 1 and "agents_group_hostname" in page[0], group
        assert "TEMP B-TREE" not in page[0], page[0]
        offline = [p for sql, p in group.items() if "last_seen IS NULL OR last_seen <" in sql]
        assert len(offline) == 1 and "agents_group_last_seen" in offline[0], group

        plain = _plans(store, AgentFilter(group="edge"))
        ids = [p for sql, p in plain.items() if sql.startswith("SELECT id FROM agents")]
        assert len(ids) == 1 and "agents_group_hostname" in ids[0] and "TEMP B-TREE" not in ids[0], plain

        deep = _plans(store, AgentFilter(), offset=10)
        ids = [p for sql, p in deep.items() if sql.startswith("SELECT id FROM agents")]
        assert len(ids) == 1 and "COVERING INDEX agents_search" in ids[0], deep
    finally:
        store.close()
