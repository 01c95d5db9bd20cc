"""The rollout state machine with real parts in-process: the server app and its SQLite store, a real
DuckDB metrics store (rows written the way the scraper writes them, read by the same query the metrics
process serves), the real controller driven tick by tick on a test clock.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from metrics import query
from metrics.store import Batch, MetricsStore
from schemas.api import HEADER_REVISION
from schemas.common import config_hash
from tests.support.server import InProcessServer
from tests.webui.helpers import group, iso, pipeline, publish, registration, sha
from webui.rollouts.controller import RolloutController
from webui.rollouts.selection import GroupServing, bucket
from webui.store.rollouts import RolloutRow

T0 = 1_800_000_000.0
POLICY: dict[str, Any] = {
    "kind": "RolloutPolicy",
    "name": "edge",
    "groups": ["canary", "edge"],
    "steps": [
        {"group": "canary"},
        {"analysis": {"duration": "30s"}},
        {"weight": 50},
        {"analysis": {"duration": "30s"}},
    ],
    "analysis": {
        "interval": "4s",
        "failure_limit": 0,
        "checks": [
            {"metric": "send_failure_ratio", "max": 0.1},
            {"metric": "apply_failed_agents", "max": 0},
            {"metric": "throughput", "vs_baseline": {"min_ratio": 0.5}},
        ],
    },
}


class World:
    def __init__(self, tmp: Path, database_url: str | None) -> None:
        self.now = [T0]
        self.srv = InProcessServer(
            tmp / "srv", clock=lambda: self.now[0], database_url=database_url, ui=True, secret_key="k" * 32
        )
        self.store = self.srv.store
        self.metrics = MetricsStore(tmp / "metrics.duckdb")
        self.controller = RolloutController(
            self.store,
            lambda ids, since: query.sums(self.metrics, ids, since, self.now[0]),
            holder="test",
            clock=lambda: self.now[0],
        )
        self.tokens: dict[str, str] = {}
        self.groups: dict[str, str] = {}

    def publish(self, n: int, previous: int | None, version: str, policy: bool = True) -> Any:
        body = publish(
            sha(n),
            None if previous is None else sha(previous),
            [
                group("canary", {"ring": "canary"}, 10, config=f"# canary {version}\n"),
                group("edge", {"tier": "edge"}, 0, config=f"# edge {version}\n"),
            ],
            [pipeline("logs", ["canary", "edge"])],
        )
        if policy:
            body["rollouts"] = [POLICY]
        return self.srv.client.post(
            "/api/v1/revisions", json=body, headers=self.srv.auth(self.srv.admin_token)
        )

    def register(self, count: int, labels: dict[str, str], prefix: str) -> list[str]:
        ids = []
        for i in range(count):
            r = self.srv.client.post(
                "/api/agent/v1/agents",
                json=registration(f"instance-{prefix}-{i:04d}", labels),
                headers=self.srv.auth(self.srv.enroll_token),
            )
            ids.append(r.json["agent_id"])
            self.tokens[r.json["agent_id"]] = r.json["agent_token"]
            self.groups[r.json["agent_id"]] = "canary" if "ring" in labels else "edge"
        return ids

    def config(self, agent_id: str) -> tuple[str, str]:
        """(revision served, body) from the real config endpoint."""
        r = self.srv.client.get(
            f"/api/agent/v1/agents/{agent_id}/config", headers=self.srv.auth(self.tokens[agent_id])
        )
        assert r.status_code == 200, r.json
        return r.headers[HEADER_REVISION], r.data.decode()

    def sync(self, ids: list[str], *, sent: float = 100.0, failed: float = 0.0, refused: float = 0.0) -> None:
        """5 s later: each agent applies what it is served and reports it; one scrape's metrics each."""
        self.now[0] += 5.0
        batch = Batch()
        for agent_id in ids:
            rev, body = self.config(agent_id)
            report = {
                "collector_state": "running",
                "effective_config_hash": config_hash(body),
                "effective_revision": rev,
                "uptime_s": 10.0,
                "last_apply": {
                    "result": "applied",
                    "config_hash": config_hash(body),
                    "revision": rev,
                    "at": iso(self.now[0] - 2.5),  # applied between two scrapes
                },
            }
            r = self.srv.client.post(
                f"/api/agent/v1/agents/{agent_id}/status",
                json=report,
                headers=self.srv.auth(self.tokens[agent_id]),
            )
            assert r.status_code == 200, r.json
            # cpu, logs_in, logs_out, metrics_in, metrics_out, traces_in, traces_out, send_failed, refused
            batch.add(
                agent_id,
                self.groups[agent_id],
                self.now[0],
                2.0,  # the scrape covered the 2 s since the previous one (after the apply)
                [0.1, sent, sent, 0, 0, 0, 0, failed, refused],
                1e6,
                1,
            )
        self.metrics.insert(batch)

    def tick(self, seconds: float = 0.0) -> RolloutRow | None:
        self.now[0] += seconds
        assert self.controller.tick()
        rows = self.store.list_rollouts(limit=1).items
        return None if not rows else self.store.rollout_row(rows[0].id)

    def measure_v2(
        self,
        canaries: int,
        edges: int,
        version: str,
        *,
        canary_metrics: dict[str, float],
        edge_metrics: dict[str, float] | None = None,
    ) -> tuple[RolloutRow | None, list[str], list[str]]:
        """v1 everywhere, then `version`: its canaries report `canary_metrics` (the edge agents, still on
        v1, `edge_metrics`) and the analysis measures once. Returns (the rollout, canaries, edges)."""
        self.publish(1, None, "v1")
        canary = self.register(canaries, {"ring": "canary", "tier": "edge"}, "c")
        edge = self.register(edges, {"tier": "edge"}, "e")
        self.sync(canary + edge)
        self.publish(2, 1, version)
        self.tick()
        self.sync(canary, **canary_metrics)
        self.sync(edge, **(edge_metrics or {}))
        return self.tick(6), canary, edge

    def roll_back_a_broken_canary(
        self, canaries: int, edges: int, *, failed: float
    ) -> tuple[RolloutRow, list[str], list[str]]:
        """v2-broken: the canaries' exporter fails `failed` items a scrape and sends none, so the analysis
        fails and the rollout rolls back. Returns (rollout, canaries, edges)."""
        broken = {"sent": 0.0, "failed": failed}
        row, canary, edge = self.measure_v2(canaries, edges, "v2-broken", canary_metrics=broken)
        assert row is not None and row.state == "rolled_back"
        return row, canary, edge

    def close(self) -> None:
        self.metrics.close()
        self.srv.close()


@pytest.fixture
def world(tmp_path: Path, backend: str | None) -> Iterator[World]:
    w = World(tmp_path, backend)
    yield w
    w.close()


def served(w: World, ids: list[str]) -> set[str]:
    return {w.config(a)[0] for a in ids}


def test_a_good_commit_goes_through_every_step(world: World) -> None:
    w = world
    assert w.publish(1, None, "v1").status_code == 201
    canary = w.register(2, {"ring": "canary", "tier": "edge"}, "c")
    edge = w.register(8, {"tier": "edge"}, "e")
    w.sync(canary + edge)
    r = w.publish(2, 1, "v2")
    assert r.status_code == 201 and len(r.json["rollouts"]) == 1
    # nobody gets the new revision before the controller applies a step
    assert served(w, canary + edge) == {sha(1)}
    row = w.tick()
    assert row is not None and row.state == "progressing" and row.step == 1
    assert served(w, canary) == {sha(2)} and served(w, edge) == {sha(1)}
    w.sync(canary + edge)
    row = w.tick(6)  # a measurement: canary vs the edge agents still on v1
    view = w.store.get_rollout(row.id if row else 0)
    assert [m.verdict for m in view.measurements] == ["pass"]
    assert {c.metric: c.verdict for c in view.measurements[0].checks} == {
        "send_failure_ratio": "pass",
        "apply_failed_agents": "pass",
        "throughput": "pass",
    }
    for _ in range(3):
        w.sync(canary + edge)
        row = w.tick(6)
    assert row is not None and row.step == 3 and row.weight == 50  # analysis passed, 50 % applied
    on_new = {a for a in edge if w.config(a)[0] == sha(2)}
    expected = {a for a in edge if bucket(a, sha(2)) < 5000}
    assert on_new == expected  # the stable hash decides, nothing else
    assert GroupServing(sha(2), sha(1), False, 100).revision_for(edge[0]) == sha(2)
    for _ in range(4):
        w.sync(canary + edge)
        row = w.tick(6)
    assert row is not None and row.state == "succeeded"
    assert served(w, canary + edge) == {sha(2)}
    w.sync(canary + edge)
    assert w.store.list_agents(limit=1).counts.get("Synced") == 10
    actions = [e.action for e in w.store.list_audit(limit=100).items if e.action.startswith("rollout.")]
    assert actions[0] == "rollout.succeed" and actions[-1] == "rollout.start" and "rollout.step" in actions


def test_a_failing_canary_is_rolled_back_and_never_published_again(world: World) -> None:
    w = world
    row, canary, edge = w.roll_back_a_broken_canary(2, 4, failed=100.0)  # the exporter fails everything
    assert row.reason is not None and "send_failure_ratio 1 > 0.1" in row.reason
    assert served(w, canary + edge) == {sha(1)}  # everyone back on v1; edge never had v2
    view = w.srv.client.get(f"/api/v1/rollouts/{row.id}", headers=w.srv.auth(w.srv.admin_token)).json
    evidence = view["measurements"][0]["checks"][0]
    assert evidence["metric"] == "send_failure_ratio" and evidence["value"] == 1.0
    assert evidence["verdict"] == "fail" and evidence["threshold"] == 0.1
    # the same commit again (a force-push back to it) is refused; a later commit starts a new rollout
    again = w.publish(2, 2, "v2-broken")
    assert again.status_code == 200 and again.json["outcome"] == "unchanged"  # it is still current
    assert w.publish(3, 2, "v3").status_code == 201
    assert w.publish(2, 3, "v2-broken").json["error"]["code"] == "commit_rolled_back"
    newest = w.store.list_rollouts(limit=1).items[0]
    assert newest.commit_sha == sha(3) and newest.bases == {"canary": sha(1), "edge": sha(1)}
    # an action on the finished rollout is a 409 with the JSON error body
    op = w.srv.create_token("operator")
    r = w.srv.client.post(f"/api/v1/rollouts/{row.id}/promote", headers=w.srv.auth(op))
    assert r.status_code == 409 and r.json["error"]["code"] == "rollout_finished"


def test_operators_pause_resume_promote_abort(world: World) -> None:
    w = world
    w.publish(1, None, "v1")
    canary = w.register(1, {"ring": "canary", "tier": "edge"}, "c")
    w.sync(canary)
    w.publish(2, 1, "v2")
    row = w.tick()
    assert row is not None
    op, viewer = w.srv.create_token("operator", "alice"), w.srv.create_token("viewer")
    url = f"/api/v1/rollouts/{row.id}"
    assert w.srv.client.post(url + "/pause", headers=w.srv.auth(viewer)).status_code == 403
    r = w.srv.client.post(url + "/pause", json={"reason": "lunch"}, headers=w.srv.auth(op))
    assert (
        r.status_code == 200 and r.json["state"] == "paused" and r.json["reason"] == "pause by alice: lunch"
    )
    assert w.tick(60) is not None and w.store.rollout_row(row.id).state == "paused"  # the controller waits
    r = w.srv.client.post(url + "/resume", headers=w.srv.auth(op))
    assert r.json["state"] == "progressing"
    r = w.srv.client.post(url + "/resume", headers=w.srv.auth(op))
    assert r.status_code == 409 and r.json["error"]["code"] == "rollout_not_paused"
    r = w.srv.client.post(url + "/promote", headers=w.srv.auth(op))
    assert r.json["step"] == 2  # the analysis step skipped
    r = w.srv.client.post(
        url + "/abort", data=b"{", headers=w.srv.auth(op) | {"Content-Type": "application/json"}
    )
    assert r.status_code == 400 and r.json["error"]["code"] == "bad_json"
    r = w.srv.client.post(url + "/abort", headers=w.srv.auth(op))
    assert r.json["state"] == "aborted"
    assert served(w, canary) == {sha(1)}
    audit = [(e.actor, e.action) for e in w.store.list_audit(limit=100).items]
    assert ("alice", "rollout.abort") in audit and ("alice", "rollout.pause") in audit


def test_one_controller_at_a_time_and_a_new_one_takes_over(world: World) -> None:
    w = world
    other = RolloutController(w.store, None, holder="other", lease_s=30, clock=lambda: w.now[0])
    assert w.controller.tick()
    assert not other.tick()  # the lease is held
    w.now[0] += 31  # the holder died: its lease expires
    assert other.tick()
    assert not w.controller.tick()


def test_groups_without_a_policy_get_the_commit_at_once(world: World) -> None:
    w = world
    w.publish(1, None, "v1", policy=False)
    edge = w.register(2, {"tier": "edge"}, "e")
    assert w.publish(2, 1, "v2", policy=False).json["rollouts"] == []
    assert served(w, edge) == {sha(2)}


def test_the_rollouts_page_shows_steps_agents_evidence_and_markers(world: World) -> None:
    from tests.ui.conftest import csrf_of, login

    w = world
    row, canary, _ = w.roll_back_a_broken_canary(1, 2, failed=50.0)
    w.sync(canary)  # the canary applies its previous revision again
    viewer, op = w.srv.app.test_client(), w.srv.app.test_client()
    login(viewer, w.srv.create_token("viewer"))
    login(op, w.srv.create_token("operator", "olga"))
    page = viewer.get("/rollouts")
    assert page.status_code == 200
    text = page.text
    assert "rolled_back" in text and "send_failure_ratio" in text and "≤ 0.1" in text
    assert "group canary" in text and "50 % of each group" in text  # the steps
    assert 'id="rollout-abort"' not in text  # a finished rollout offers no actions
    assert "Reason:" in text and "failed measurement" in text  # the evidence of the rollback
    # the canary's chart markers name the rollout step that applied each revision
    events = w.store.agent_events(canary[0], kinds=["applied"]).items
    assert any(e.detail == {"rollout": row.id, "policy": "edge", "step": "group canary"} for e in events)
    assert any(e.detail and e.detail.get("step") == "rollback" for e in events)
    # operators act from the page (confirm first); a viewer may not
    w.publish(3, 2, "v3")
    fresh = w.tick()
    assert fresh is not None
    page = op.get(f"/rollouts?id={fresh.id}")
    assert 'id="rollout-pause"' in page.text
    token = csrf_of(page.text)
    assert (
        viewer.post(
            f"/rollouts/{fresh.id}/pause", data={"csrf_token": csrf_of(viewer.get("/rollouts").text)}
        ).status_code
        == 403
    )
    confirm = op.post(f"/rollouts/{fresh.id}/pause", data={"csrf_token": token})
    assert "Pause rollout" in confirm.text
    done = op.post(f"/rollouts/{fresh.id}/pause", data={"csrf_token": token, "confirm": "yes"})
    assert done.status_code == 302 and w.store.rollout_row(fresh.id).state == "paused"
    audit = [(e.actor, e.action) for e in w.store.list_audit(limit=50).items]
    assert ("olga", "rollout.pause") in audit


def test_a_canary_that_refuses_data_is_rolled_back_by_refused_ratio(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    w = world
    checks = [{"metric": "refused_ratio", "max": 0.1}]
    monkeypatch.setitem(POLICY["analysis"], "checks", checks)
    row, canary, edge = w.measure_v2(
        1,
        2,
        "v2-tiny-memory-limit",
        canary_metrics={"sent": 10.0, "refused": 90.0},  # its receivers refuse nine items in ten
        edge_metrics={"refused": 1000.0},  # the old revision's agents are not judged
    )
    assert row is not None and row.state == "rolled_back"
    assert row.reason is not None and "refused_ratio 0.9 > 0.1" in row.reason, row.reason
    [evidence] = w.store.get_rollout(row.id).measurements[0].checks
    assert evidence.metric == "refused_ratio" and evidence.value == 0.9 and evidence.verdict == "fail"
    assert evidence.detail == "90 items refused, 10 accepted by 1 agents"
    assert served(w, canary + edge) == {sha(1)}
