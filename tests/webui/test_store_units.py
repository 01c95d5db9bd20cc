"""Pure and store-level units: group resolution (property-tested), the busy database answer."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from tests.support.server import InProcessServer
from webui.store.groups import GroupSelector, matches, resolve_group

KEYS = st.sampled_from(["env", "tier", "rack", "os"])
VALUES = st.sampled_from(["a", "b", "c"])
LABELS = st.dictionaries(KEYS, VALUES, max_size=4)
GROUPS = st.lists(
    st.builds(
        GroupSelector,
        name=st.from_regex(r"[a-e][a-z]{0,3}", fullmatch=True),
        selector=LABELS,
        priority=st.integers(-3, 3),
    ),
    max_size=8,
    unique_by=lambda g: g.name,
)


@given(labels=LABELS, groups=GROUPS)
def test_resolution_is_the_highest_priority_match_ties_by_name(
    labels: dict[str, str], groups: list[GroupSelector]
) -> None:
    chosen = resolve_group(labels, groups)
    candidates = [g for g in groups if all(labels.get(k) == v for k, v in g.selector.items())]
    if not candidates:
        assert chosen is None
        return
    best = max(g.priority for g in candidates)
    assert chosen == min(g.name for g in candidates if g.priority == best)
    assert resolve_group(labels, list(reversed(groups))) == chosen  # order of groups does not matter


def test_empty_selector_matches_everything() -> None:
    assert matches({}, {"env": "prod"}) and matches({}, {})
    assert not matches({"env": "prod"}, {})


def test_a_locked_database_is_a_503_not_a_500(tmp_path: Path) -> None:
    srv = InProcessServer(tmp_path)
    srv.store.db.close()
    # another process holds the write lock for longer than the busy timeout
    blocker = sqlite3.connect(srv.settings.db_path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    try:
        conn = srv.store.db.conn()
        conn.execute("PRAGMA busy_timeout = 50")  # keep the test short; production waits 10 s
        r = srv.client.post("/api/v1/tokens", json={"role": "viewer"}, headers=srv.auth(srv.admin_token))
        assert r.status_code == 503 and r.json["error"]["code"] == "unavailable"
        assert r.headers["Retry-After"] == "1"
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    r = srv.client.post("/api/v1/tokens", json={"role": "viewer"}, headers=srv.auth(srv.admin_token))
    assert r.status_code == 201


def test_retention_prunes_old_events_commands_and_runs(tmp_path: Path) -> None:
    now = [1_800_000_000.0]
    srv = InProcessServer(tmp_path, clock=lambda: now[0])
    h = srv.auth(srv.admin_token)
    reg = srv.client.post(
        "/api/agent/v1/agents",
        json={"instance_id": "inst-ret-01", "hostname": "h"},
        headers=srv.auth(srv.enroll_token),
    ).json
    cmd = srv.client.post(
        f"/api/v1/agents/{reg['agent_id']}/commands", json={"action": "stop"}, headers=h
    ).json
    queued = srv.client.post(
        f"/api/v1/agents/{reg['agent_id']}/commands", json={"action": "start"}, headers=h
    ).json
    srv.client.post(
        f"/api/agent/v1/agents/{reg['agent_id']}/status",
        headers=srv.auth(reg["agent_token"]),
        json={"collector_state": "stopped", "uptime_s": 1, "acks": [{"id": cmd["id"], "result": "done"}]},
    )
    now[0] += 40 * 86400
    srv.client.post(
        f"/api/agent/v1/agents/{reg['agent_id']}/status",
        headers=srv.auth(reg["agent_token"]),
        json={"collector_state": "running", "uptime_s": 1},
    )
    removed = srv.store.prune(events_older_than_s=30 * 86400, runs_older_than_s=30 * 86400)
    assert removed["agent_events"] >= 3 and removed["commands"] == 1
    left = srv.client.get(f"/api/v1/agents/{reg['agent_id']}/events", headers=h).json["items"]
    assert [e["kind"] for e in left] == ["state"]  # only the recent one
    cmds = srv.client.get(f"/api/v1/agents/{reg['agent_id']}/commands", headers=h).json["items"]
    assert [c["id"] for c in cmds] == [queued["id"]]  # an unacknowledged command is never pruned
    assert srv.client.get("/api/v1/audit", headers=h).json["page"]["total"] >= 4  # audit kept
