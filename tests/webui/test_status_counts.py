"""The maintained per-status counts (webui/store/counts.py) always equal a scan of every agent.

The oracle is the store's own scanning path: `list_agents` with a filter that matches every agent
(a search for the id prefix every agent id has) counts by evaluating each agent, while the unfiltered
call reads the maintained table. Random sequences of registrations, re-registrations that move an agent
to another group, status reports of every kind, publishes, deletions and the clock moving on must keep
the two equal after every step.
"""

from __future__ import annotations

import random
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest

from schemas.api import AgentRegistration, ApplyResult, DriftEvent, StatusReport
from tests.ui.seed import TIERS, example_revision
from webui.store import AgentFilter, Store
from webui.store.db import MIGRATIONS, _statements

EVERY_AGENT = AgentFilter(search="ag_")  # every id starts with ag_: forces the scanning path


def assert_counts_match(store: Store) -> dict[str, int]:
    fast = store.list_agents(limit=1)
    scanned = store.list_agents(EVERY_AGENT, limit=1)
    assert fast.counts == scanned.counts
    assert fast.page.total == scanned.page.total
    for status in ("online", "degraded", "offline"):
        assert (
            store.list_agents(AgentFilter(status=status), limit=1).page.total
            == store.list_agents(AgentFilter(status=status, search="ag_"), limit=1).page.total
        )
    for group in store.list_groups()[0]:  # agents per group (the groups page, the fleet's group filter)
        assert (
            group.agents == store.list_agents(AgentFilter(group=group.name, search="ag_"), limit=1).page.total
        )
    return fast.counts


def register(store: Store, i: int, tier: int) -> str:
    return store.register_agent(
        AgentRegistration(instance_id=f"inst-{i:04d}", hostname=f"host-{i:04d}", labels=dict(TIERS[tier]))
    ).agent_id


def report(store: Store, agent_id: str, kind: str, now: float) -> None:
    view = store.get_agent(agent_id)
    desired = view.desired_hash or "f" * 64
    at = datetime.fromtimestamp(now, UTC)
    if kind == "synced":
        apply = ApplyResult(result="applied", config_hash=desired, revision=view.desired_revision, at=at)
        body = StatusReport(
            collector_state="running", effective_config_hash=desired, last_apply=apply, uptime_s=1
        )
    elif kind == "failed":
        apply = ApplyResult(result="failed", config_hash=desired, error="rejected", at=at)
        body = StatusReport(collector_state="running", last_apply=apply, uptime_s=1)
    elif kind == "drift":
        drift = DriftEvent(at=at, desired_hash=desired, local_hash="e" * 64)
        body = StatusReport(collector_state="running", drift_events=[drift], uptime_s=1)
    else:  # an old config: OutOfSync
        body = StatusReport(collector_state="running", effective_config_hash="0" * 64, uptime_s=1)
    store.report_status(agent_id, body)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_counts_follow_every_change(tmp_path: Path, seed: int, backend: str | None) -> None:
    rnd = random.Random(seed)
    now = [1_800_000_000.0]
    failing: set[str] = set()
    store = Store.open(
        tmp_path / "state.db" if backend is None else None,
        database_url=backend,  # both backends (tests/webui/conftest.py)
        poll_interval_s=10.0,
        clock=lambda: now[0],
        scrape_failing=lambda: failing,
    )
    try:
        shas = [f"{n:040x}" for n in range(1, 10)]
        store.publish(example_revision(shas[0], None), actor="t", role="reconciler")
        published = 1
        agents: list[str] = []
        seen_sync: set[str] = set()
        for step in range(120):
            op = rnd.choice(["register", "register", "reregister", "report", "report", "report", "publish",
                             "delete", "clock", "failing"])  # fmt: skip
            if op == "register" or not agents:
                agents.append(register(store, step, rnd.randrange(len(TIERS))))
            elif op == "reregister":  # new labels: the agent may move to another group (or to none)
                idx = rnd.randrange(len(agents))
                view = store.get_agent(agents[idx])
                store.approve_reregistration(view.id, actor="t", role="operator")  # no token at hand
                store.register_agent(
                    AgentRegistration(instance_id=view.instance_id, hostname=view.hostname,
                                      labels=dict(TIERS[rnd.randrange(len(TIERS))]))
                )  # fmt: skip
            elif op == "report":
                report(store, rnd.choice(agents), rnd.choice(["synced", "failed", "drift", "old"]), now[0])
            elif op == "publish" and published < len(shas):
                rev = example_revision(shas[published], shas[published - 1], tweak=f"rev {published}")
                store.publish(rev, actor="t", role="reconciler")
                published += 1
            elif op == "delete":
                gone = agents.pop(rnd.randrange(len(agents)))
                store.delete_agent(gone, actor="t", role="admin")
                failing.discard(gone)
            elif op == "clock":
                now[0] += rnd.choice([5.0, 40.0])  # 40 s: past offline_after (30 s) for silent agents
            elif op == "failing":
                failing.symmetric_difference_update({rnd.choice(agents)})
            counts = assert_counts_match(store)
            seen_sync.update(k for k in counts if k[0].isupper())
        # the sequence exercised every sync status, so every transition kind was checked
        assert seen_sync >= {"Synced", "ApplyFailed", "Drifted", "OutOfSync", "NoGroup"}, seen_sync
    finally:
        store.close()


def test_an_old_database_gets_its_counts_on_migration(tmp_path: Path) -> None:
    """A database an older server left (schema before the counts table, agents in every sync status)
    gets its counts filled by the migration that creates the table."""
    db = tmp_path / "state.db"
    before_counts = next(i for i, m in enumerate(MIGRATIONS) if "agent_sync_counts" in m)
    conn = sqlite3.connect(db, isolation_level=None)
    for script in MIGRATIONS[:before_counts]:  # what the older server ran
        for statement in _statements(script):
            conn.execute(statement)
    conn.execute(f"PRAGMA user_version = {before_counts}")
    conn.execute("INSERT INTO revisions (commit_sha, created_at) VALUES ('c1', 1)")
    conn.execute("INSERT INTO publications (commit_sha, published_at) VALUES ('c1', 1)")
    for name, config_hash in (("edge", "h-edge"), ("gw", "h-gw")):
        conn.execute(
            "INSERT INTO revision_groups (commit_sha, name, selector, priority, config, config_hash,"
            " pipelines) VALUES ('c1', ?, '{}', 0, '', ?, '[]')",
            (name, config_hash),
        )
    rows = [  # group, reported hash, last apply result, last apply hash
        ("edge", "h-edge", "applied", "h-edge"),  # Synced
        ("edge", "old", "failed", "h-edge"),  # ApplyFailed
        ("gw", "old", None, None),  # OutOfSync
        (None, None, None, None),  # NoGroup (no matching group)
        ("gone", None, None, None),  # NoGroup (a group the current revision no longer has)
    ]
    for i, (group, reported, result, applied_hash) in enumerate(rows * 3):
        conn.execute(
            "INSERT INTO agents (id, instance_id, hostname, token_hash, registered_at, last_seen, group_name,"
            " reported_hash, last_apply_result, last_apply_hash) VALUES (?, ?, ?, 'x', 1, 1, ?, ?, ?, ?)",
            (f"ag_{i:03d}", f"i{i}", f"h{i}", group, reported, result, applied_hash),
        )
    conn.close()
    store = Store.open(db, poll_interval_s=3600.0)  # migrates
    try:
        assert store.stored_sync_counts() == {"Synced": 3, "ApplyFailed": 3, "OutOfSync": 3, "NoGroup": 6}
        assert store.list_agents(limit=1).counts == store.list_agents(EVERY_AGENT, limit=1).counts
    finally:
        store.close()


def test_rebuild_repairs_rows_written_around_the_store(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "state.db", poll_interval_s=3600.0)
    try:
        store.publish(example_revision("b" * 40, None), actor="t", role="reconciler")
        register(store, 1, 0)
        with store.db.write() as conn:  # as an import or a restore from another tool would
            conn.execute(
                "INSERT INTO agents (id, instance_id, hostname, token_hash, registered_at, last_seen)"
                " VALUES ('ag_raw', 'raw', 'raw', 'x', 1, ?)",
                (store.clock(),),
            )
        assert store.list_agents(limit=1).counts != store.list_agents(EVERY_AGENT, limit=1).counts
        store.rebuild_status_counts()
        assert_counts_match(store)
    finally:
        store.close()
