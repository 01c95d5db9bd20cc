"""Proof of the scale-out layout on this machine: three real server replicas sharing one PostgreSQL,
behind a real nginx; a real agent and collector through the balancer.

- they start at the same moment: one migration, one set of bootstrap tokens;
- a revision published through one replica is served with the same ETag by all three;
- reconcilers racing through two replicas: one wins, the other gets 409 (the reconcile run: conflict);
- kill -9 of one replica: polling through the balancer goes on, no request fails;
- a real `ctrltower agent` with the collector reaches Synced through the balancer.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from compiler.api import compile_repo
from reconciler.client import ControlClient, make_http_client
from reconciler.git import GitRepo
from reconciler.run import ReconcileSettings, reconcile_once
from schemas.api import GroupRevision, RevisionPublish, RevisionSummary
from schemas.common import config_hash
from tests.agent.helpers import collector_config
from tests.reconciler.gitutil import head, init_repo
from tests.support.agent import AgentProcess
from tests.support.cluster import ScaleOut, wait_for
from tests.support.server import auth
from webui.store.db import MIGRATIONS

pytestmark = [pytest.mark.slow]


@pytest.fixture
def scale_out(tmp_path: Path, database_url: str) -> Iterator[ScaleOut]:
    with ScaleOut(tmp_path, database_url, replicas=3) as so:
        yield so


def _revision(n: int, previous: str | None, text: str, selector: dict[str, str] | None = None) -> str:
    body = RevisionPublish(
        commit_sha=f"{n:040x}",
        previous_commit_sha=previous,
        message=f"revision {n}",
        groups=[
            GroupRevision(
                name="edge",
                selector=selector if selector is not None else {"role": "edge"},
                priority=0,
                config=text,
                config_hash=config_hash(text),
            )
        ],
        pipelines=[],
    )
    return body.model_dump_json(by_alias=True)


def _etag(text: str) -> str:
    return '"' + config_hash(text) + '"'


def _publish(base_url: str, token: str, n: int, previous: str | None, text: str) -> None:
    r = httpx.post(
        base_url + "/api/v1/revisions",
        content=_revision(n, previous, text),
        headers={**auth(token), "Content-Type": "application/json"},
        timeout=30,
    )
    assert r.status_code in (200, 201), r.text


def test_replicas_share_state_serve_one_etag_and_survive_kill_9(
    scale_out: ScaleOut, database_url: str
) -> None:
    so = scale_out
    with psycopg.connect(database_url) as conn:  # started together, migrated once
        assert conn.execute("SELECT version FROM schema_version").fetchall() == [(len(MIGRATIONS),)]
    reconciler = so.create_token("reconciler")
    _publish(so.replicas[0].base_url, reconciler, 1, None, "a: 1\n")  # through replica 0
    # an agent registered through the balancer polls every replica directly: one ETag everywhere
    with httpx.Client(base_url=so.lb_url, timeout=10) as lb:
        reg = lb.post(
            "/api/agent/v1/agents",
            json={"instance_id": "inst-so-1", "hostname": "h1", "labels": {"role": "edge"}},
            headers=auth(so.enroll_token),
        ).json()
    path = f"/api/agent/v1/agents/{reg['agent_id']}/config"
    agent_h = auth(reg["agent_token"])
    etags = {httpx.get(r.base_url + path, headers=agent_h, timeout=10).headers["ETag"] for r in so.replicas}
    assert etags == {_etag("a: 1\n")}

    # a new revision through replica 2: every replica serves it (within the wait; no timing claim)
    _publish(so.replicas[2].base_url, reconciler, 2, f"{1:040x}", "a: 2\n")
    new = _etag("a: 2\n")
    for rep in so.replicas:
        wait_for(
            lambda rep=rep: (
                httpx.get(rep.base_url + path, headers=agent_h, timeout=10).headers.get("ETag") == new
            ),
            f"replica {rep.port} serves revision 2",
            10,
        )

    # kill -9 one replica while an agent polls through the balancer: no poll fails
    failures: list[str] = []
    done = threading.Event()
    polls = [0]

    def poll_forever() -> None:
        with httpx.Client(base_url=so.lb_url, timeout=10) as lb:
            while not done.is_set() and polls[0] < 20_000:  # bounded
                resp = lb.get(path, headers={**agent_h, "If-None-Match": new})
                polls[0] += 1
                if resp.status_code != 304:
                    failures.append(f"{resp.status_code} {resp.text[:200]}")

    poller = threading.Thread(target=poll_forever)
    poller.start()
    try:
        wait_for(lambda: polls[0] >= 50, "polls before the kill", 30)
        so.replicas[1].kill()
        before = polls[0]
        wait_for(lambda: polls[0] >= before + 200, "polls after the kill", 60)
    finally:
        done.set()
        poller.join(30)
    assert not failures, failures[:5]
    # the survivors still answer everything, the dead one's agents included
    with so.client(so.admin_token) as c:
        assert c.get("/api/v1/agents").json()["page"]["total"] == 1


class _RivalFirst(ControlClient):
    """This reconciler reads the current revision through one replica; a rival reconciler publishes
    through another replica before this one publishes (the race, made deterministic)."""

    def __init__(self, http: httpx.Client, rival_url: str, token: str, rival: RevisionPublish) -> None:
        super().__init__(http)
        self.rival_url, self.token, self.rival = rival_url, token, rival

    def current_revision(self) -> RevisionSummary | None:
        current = super().current_revision()
        with ControlClient(make_http_client(self.rival_url, self.token)) as other:
            other.publish(
                self.rival.model_copy(update={"previous_commit_sha": current.commit_sha if current else None})
            )
        return current


def test_reconcilers_racing_through_two_replicas_one_wins(scale_out: ScaleOut, tmp_path: Path) -> None:
    so = scale_out
    token = so.create_token("reconciler")
    # 1. the same previous revision POSTed through two replicas at the same moment, several times
    previous: str | None = None
    for n in range(1, 4):
        barrier = threading.Barrier(2)
        out: list[Any] = [None, None]

        def post(
            i: int, n: int = n, previous: str | None = previous, barrier: Any = barrier, out: Any = out
        ) -> None:
            body = _revision(10 * n + i, previous, f"race: {n}-{i}\n")
            barrier.wait(30)
            out[i] = httpx.post(
                so.replicas[i].base_url + "/api/v1/revisions",
                content=body,
                headers={**auth(token), "Content-Type": "application/json"},
                timeout=30,
            )

        threads = [threading.Thread(target=post, args=(i,)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        codes = sorted(r.status_code for r in out)
        assert codes[0] in (200, 201) and codes[1] == 409, [(r.status_code, r.text) for r in out]
        loser = next(r for r in out if r.status_code == 409)
        assert loser.json()["error"]["code"] == "revision_conflict"
        previous = next(r for r in out if r.status_code != 409).json()["commit_sha"]

    # 2. the reconciler itself: it loses the race, reports a conflict run (the CLI exits 6 on it)
    repo = init_repo(tmp_path / "cfg")
    with GitRepo.open(repo) as r:
        compiled = compile_repo(r.read_files(head(repo)))
    rival = RevisionPublish(
        commit_sha="feed" + "0" * 36,
        previous_commit_sha=None,
        groups=compiled.groups,
        pipelines=compiled.pipelines,
    )
    settings = ReconcileSettings(source=str(repo), ref="main", cache_dir=tmp_path / "cache")
    http = make_http_client(so.replicas[0].base_url, token)
    with _RivalFirst(http, so.replicas[2].base_url, token, rival) as racing:
        result = reconcile_once(settings, racing, environ={})
    assert result.outcome == "conflict" and "revision_conflict" in str(result.error)
    with ControlClient(make_http_client(so.replicas[1].base_url, token)) as client:
        now = client.current_revision()
    assert now is not None and now.commit_sha == rival.commit_sha  # the winner's revision stands


@pytest.mark.collector
def test_a_real_agent_and_collector_sync_through_the_balancer(
    scale_out: ScaleOut, tmp_path: Path, collector_bin: Path
) -> None:
    from demo.sink import start_sink

    so = scale_out
    reconciler = so.create_token("reconciler")
    viewer = so.create_token("viewer")
    logs = tmp_path / "logs"
    logs.mkdir()
    with start_sink("127.0.0.1", 0) as sink:
        text = collector_config(f"{logs}/*.log", sink.endpoint)
        _publish(so.lb_url, reconciler, 1, None, text)
        with AgentProcess(so.lb_url, so.enroll_token, collector_bin, tmp_path, labels="role=edge") as agent:

            def synced() -> dict[str, Any] | None:
                items = httpx.get(so.lb_url + "/api/v1/agents", headers=auth(viewer), timeout=10).json()[
                    "items"
                ]
                return items[0] if items and items[0]["sync_status"] == "Synced" else None

            try:
                view = wait_for(synced, "the agent Synced through the balancer", 30)
            except AssertionError:
                raise AssertionError(agent.log_text(4000)) from None
            assert view["run_state"] == "running" and view["desired_hash"] == config_hash(text)
            # every replica tells the same story about it
            for rep in so.replicas:
                one = httpx.get(
                    rep.base_url + f"/api/v1/agents/{view['id']}", headers=auth(viewer), timeout=10
                )
                assert one.json()["sync_status"] == "Synced"
