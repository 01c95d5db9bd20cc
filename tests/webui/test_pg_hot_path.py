"""The 304 poll path on PostgreSQL: no database round trip per request, and a publish made through
another replica is served at once (LISTEN/NOTIFY), not after a cache timeout.

The app runs in-process on the real PostgreSQL; "another replica" is a second `Store` with its own
connection pool, exactly what a second server process holds. Round trips are counted by wrapping the
pool's borrow method of the app's own store (instrumentation of the real thing, not a mock).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from schemas.api import RevisionPublish
from tests.support.ready import wait_until
from tests.support.server import InProcessServer
from tests.webui.helpers import group, publish, registration, sha
from webui.store import Store


@pytest.fixture
def pg_srv(tmp_path: Path, database_url: str) -> Iterator[InProcessServer]:
    server = InProcessServer(tmp_path / "data", poll_interval_s=5.0, database_url=database_url)
    yield server
    server.close()


def _count_borrows(store: Store) -> list[int]:
    """Round trips made on this thread (the Flask test client serves requests on it); the listener's
    own re-reads (on a notification or its fallback timer) run on its thread and do not count."""
    calls = [0]
    db: Any = store.db
    original = db._borrow
    me = threading.get_ident()

    def counting() -> Any:
        if threading.get_ident() == me:
            calls[0] += 1
        return original()

    db._borrow = counting
    return calls


def test_a_304_poll_costs_no_database_round_trip_and_a_publish_elsewhere_is_served(
    pg_srv: InProcessServer, database_url: str
) -> None:
    other = Store.open(database_url=database_url)  # the second replica
    try:
        other.publish(RevisionPublish.model_validate(publish(sha(1), None, [group("edge", config="a: 1\n")])))
        reg = pg_srv.client.post(
            "/api/agent/v1/agents", json=registration("inst-hot-1"), headers=pg_srv.auth(pg_srv.enroll_token)
        ).json
        h = pg_srv.auth(reg["agent_token"])
        url = f"/api/agent/v1/agents/{reg['agent_id']}/config"
        first = pg_srv.client.get(url, headers=h)
        assert first.status_code == 200
        etag = first.headers["ETag"]
        # the listener pushes the counters once it is connected, and again on each change; from the
        # moment it has pushed those of every write above (the registration bumps them too: under load
        # its notification can arrive after the listener's first push), polls are free
        cache: Any = pg_srv.app.extensions["ctrltower.config_cache"]
        now = pg_srv.store.counters()
        wait_until(lambda: cache._pushed == now, 30, interval=0.02, what="the listener caught up")
        pg_srv.client.get(url, headers={**h, "If-None-Match": etag})  # warm: counters as pushed
        borrows = _count_borrows(pg_srv.store)
        for _ in range(200):
            r = pg_srv.client.get(url, headers={**h, "If-None-Match": etag})
            assert r.status_code == 304
        assert borrows[0] == 0, f"{borrows[0]} database round trips for 200 polls answered 304"

        # a publish through the other replica: served here without waiting for any cache timeout
        # (the fallback re-read is poll_interval/3 = 1.7 s; the notification arrives at commit)
        other.publish(
            RevisionPublish.model_validate(publish(sha(2), sha(1), [group("edge", config="a: 2\n")]))
        )
        wait_until(
            lambda: pg_srv.client.get(url, headers={**h, "If-None-Match": etag}).status_code == 200,
            30,
            interval=0.02,
            what="the new revision served",
        )
        r = pg_srv.client.get(url, headers={**h, "If-None-Match": etag})
        assert r.status_code == 200 and r.data == b"a: 2\n" and r.headers["X-Ctrltower-Revision"] == sha(2)
    finally:
        other.close()


def test_a_token_issued_by_another_replica_works_before_its_notification(
    pg_srv: InProcessServer, database_url: str
) -> None:
    other = Store.open(database_url=database_url)
    try:
        other.publish(RevisionPublish.model_validate(publish(sha(1), None, [group("edge")])))
        reg = pg_srv.client.post(
            "/api/agent/v1/agents", json=registration("inst-hot-2"), headers=pg_srv.auth(pg_srv.enroll_token)
        ).json
        url = f"/api/agent/v1/agents/{reg['agent_id']}/config"
        assert pg_srv.client.get(url, headers=pg_srv.auth(reg["agent_token"])).status_code == 200
        # the agent re-registers through the other replica: a new token, the old one revoked
        from schemas.api import AgentRegistration

        proof = registration("inst-hot-2", agent_token=reg["agent_token"])  # the agent proves it is itself
        again = other.register_agent(AgentRegistration.model_validate(proof))
        assert again.agent_id == reg["agent_id"]
        # whether or not this worker has heard of it yet, the new token works and the old one does not
        assert pg_srv.client.get(url, headers=pg_srv.auth(again.agent_token)).status_code == 200
        assert pg_srv.client.get(url, headers=pg_srv.auth(reg["agent_token"])).status_code == 401
    finally:
        other.close()
