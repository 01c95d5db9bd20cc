"""Control API in-process: errors, revisions, groups/history/diff, pipelines, runs, filters, tokens."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from tests.support.server import InProcessServer
from tests.webui.conftest import Clock
from tests.webui.helpers import group, pipeline, publish, registration, sha


def admin(srv: InProcessServer) -> dict[str, str]:
    return srv.auth(srv.admin_token)


def pub(srv: InProcessServer, body: dict[str, Any]) -> Any:
    return srv.client.post("/api/v1/revisions", json=body, headers=admin(srv))


def test_errors_have_one_shape(tmp_path: Any) -> None:
    srv = InProcessServer(tmp_path, max_body_bytes=4096)
    h = admin(srv)
    cases = [
        (srv.client.post("/api/v1/revisions", data=b"{not json", headers=h), 400, "bad_json"),
        (srv.client.post("/api/v1/revisions", data=b"", headers=h), 400, "bad_json"),
        (srv.client.post("/api/v1/revisions", data=b"\xff\xfe", headers=h), 400, "bad_json"),
        (srv.client.post("/api/v1/revisions", json=[1, 2], headers=h), 422, "validation_error"),
        (
            srv.client.post("/api/v1/tokens", json={"role": "viewer", "name": 5}, headers=h),
            422,
            "validation_error",
        ),
        (srv.client.post("/api/v1/revisions", data=b"x" * 5000, headers=h), 413, "body_too_large"),
        (
            srv.client.post("/api/v1/tokens", json={"role": "admin", "nmae": "typo"}, headers=h),
            422,
            "validation_error",
        ),
        (srv.client.post("/api/v1/tokens", json={"role": "root"}, headers=h), 422, "validation_error"),
        (srv.client.get("/api/v1/agents?limit=abc", headers=h), 400, "bad_request"),
        (srv.client.get("/api/v1/agents?limit=0", headers=h), 400, "bad_request"),
        (srv.client.get("/api/v1/agents?status=sleepy", headers=h), 400, "bad_request"),
        (srv.client.get("/api/v1/agents?label=novalue", headers=h), 400, "bad_request"),
        (srv.client.get("/api/v1/agents/ag_nope", headers=h), 404, "not_found"),
        (srv.client.get("/api/v1/agents/ag_nope/events", headers=h), 404, "not_found"),
        (
            srv.client.post("/api/v1/agents/ag_nope/commands", json={"action": "stop"}, headers=h),
            404,
            "not_found",
        ),
        (
            srv.client.post("/api/v1/agents/ag_nope/commands", json={"action": "explode"}, headers=h),
            422,
            "validation_error",
        ),
        (srv.client.get("/api/v1/revisions/zzzzzzz", headers=h), 404, "not_found"),
        (srv.client.get("/api/v1/groups/nope", headers=h), 404, "not_found"),
        (srv.client.get("/api/v1/groups/nope?diff=abc", headers=h), 400, "bad_request"),
        (srv.client.get("/api/v1/pipelines/nope", headers=h), 404, "not_found"),
        (srv.client.delete("/api/v1/tokens/999", headers=h), 404, "not_found"),
        (srv.client.delete("/api/v1/tokens/" + "9" * 30, headers=h), 404, "not_found"),  # beyond int64
        (
            srv.client.post(
                "/api/v1/revisions",
                json=publish(sha(1), None, [{**group("edge"), "priority": 10**30}]),
                headers=h,
            ),
            422,
            "validation_error",
        ),
        (
            srv.client.post(
                "/api/v1/tokens",
                data='{"role": "viewer", "name": "\\ud800"}',
                headers=h,
                content_type="application/json",
            ),
            400,
            "bad_json",
        ),  # a lone surrogate escape is not interoperable JSON (RFC 8259 8.2)
        (srv.client.get("/api/v1/nothing-here", headers=h), 404, "not_found"),
        (srv.client.get("/api/agent/v1/agents/x/config/extra"), 404, "not_found"),
        (srv.client.delete("/api/v1/agents", headers=h), 405, "method_not_allowed"),
        (srv.client.get("/api/v1/agents", headers={"Authorization": "Basic abc"}), 401, "unauthorized"),
        (
            srv.client.get("/api/v1/agents", headers={"Authorization": "Bearer " + "x" * 5000}),
            401,
            "unauthorized",
        ),
    ]
    for resp, status, code in cases:
        assert resp.status_code == status, (resp.request.path, resp.status_code, resp.data[:300])
        assert resp.mimetype == "application/json"
        assert resp.json["error"]["code"] == code, resp.json
        assert set(resp.json["error"]) == {"code", "message", "details"}
    bad = srv.client.post("/api/v1/tokens", json={"role": "admin", "nmae": "typo"}, headers=h).json
    assert bad["error"]["details"][0]["loc"] == ["nmae"]


def test_publish_cas_unchanged_rollback_and_history(srv: InProcessServer, clock: Clock) -> None:
    g1 = group("edge", {"env": "prod"}, config="# v1\n")
    g2 = group("edge", {"env": "prod"}, config="# v2\n")
    other = group("core", {}, config="# core\n")
    assert pub(srv, publish(sha(1), sha(9), [g1])).json["error"]["code"] == "revision_conflict"
    assert pub(srv, publish(sha(1), None, [g1, other])).json["outcome"] == "published"
    clock.advance(1)
    r = pub(srv, publish(sha(1), None, [g1, other]))
    assert r.status_code == 200 and r.json["outcome"] == "unchanged"
    conflict = pub(srv, publish(sha(2), None, [g2, other]))
    assert conflict.status_code == 409
    assert conflict.json["error"]["details"] == {"current": sha(1), "expected": None}
    assert pub(srv, publish(sha(2), sha(1), [g2, other])).status_code == 201
    clock.advance(1)
    assert pub(srv, publish(sha(3), sha(2), [g2])).status_code == 201  # core removed, edge unchanged
    clock.advance(1)
    assert pub(srv, publish(sha(1), sha(3), [g1, other])).status_code == 201  # rollback to sha(1)

    revs = srv.client.get("/api/v1/revisions", headers=admin(srv)).json
    assert [r["commit_sha"] for r in revs["items"]] == [sha(1), sha(3), sha(2), sha(1)]
    assert [r["current"] for r in revs["items"]] == [True, False, False, False]
    assert revs["items"][0]["groups"] == {"core": other["config_hash"], "edge": g1["config_hash"]}
    paged = srv.client.get("/api/v1/revisions?limit=2&offset=1", headers=admin(srv)).json
    assert [r["commit_sha"] for r in paged["items"]] == [sha(3), sha(2)] and paged["page"]["total"] == 4

    detail = srv.client.get(f"/api/v1/revisions/{sha(2)}", headers=admin(srv)).json
    assert detail["revision"]["commit_sha"] == sha(2)
    assert [g["name"] for g in detail["group_configs"]] == ["core", "edge"]
    assert detail["group_configs"][1]["config"] == "# v2\n"

    edge = srv.client.get("/api/v1/groups/edge", headers=admin(srv)).json
    assert edge["config"] == "# v1\n"
    assert [(h["commit_sha"], h["config_hash"]) for h in edge["history"]] == [
        (sha(1), g1["config_hash"]),
        (sha(2), g2["config_hash"]),
        (sha(1), g1["config_hash"]),
    ]
    core = srv.client.get("/api/v1/groups/core", headers=admin(srv)).json
    assert [h["config_hash"] for h in core["history"]] == [other["config_hash"], None, other["config_hash"]]
    diff = srv.client.get(f"/api/v1/groups/edge?diff={sha(1)}..{sha(2)}", headers=admin(srv)).json["diff"]
    assert "-# v1" in diff and "+# v2" in diff
    missing = srv.client.get(f"/api/v1/groups/edge?diff={sha(1)}..{'f' * 40}", headers=admin(srv))
    assert missing.status_code == 404


def test_publish_rejects_inconsistent_payloads(srv: InProcessServer) -> None:
    g = group("edge")
    wrong = {**g, "config_hash": "0" * 64}
    r = pub(srv, publish(sha(1), None, [wrong]))
    assert r.status_code == 422 and r.json["error"]["details"] == {"groups": ["edge"]}
    assert pub(srv, publish(sha(1), None, [g, g])).status_code == 422
    assert pub(srv, publish("NOT-A-SHA", None, [g])).status_code == 422
    assert srv.client.get("/api/v1/revisions", headers=admin(srv)).json["page"]["total"] == 0


def test_groups_and_pipelines(srv: InProcessServer) -> None:
    assert srv.client.get("/api/v1/groups", headers=admin(srv)).json == {"items": [], "revision": None}
    srv.client.post(
        "/api/agent/v1/agents",
        json=registration("inst-gp-0001", {"env": "prod"}),
        headers=srv.auth(srv.enroll_token),
    )
    body = publish(
        sha(1),
        None,
        [group("edge", {"env": "prod"}, 3), group("core", {})],
        [pipeline("logs", ["edge"]), pipeline("metrics", ["core"])],
    )
    pub(srv, body)
    groups = srv.client.get("/api/v1/groups", headers=admin(srv)).json
    assert [(g["name"], g["agents"]) for g in groups["items"]] == [("edge", 1), ("core", 0)]
    pipes = srv.client.get("/api/v1/pipelines", headers=admin(srv)).json
    assert [p["name"] for p in pipes["items"]] == ["logs", "metrics"]
    one = srv.client.get("/api/v1/pipelines/logs", headers=admin(srv)).json
    assert one["edges"] == [{"from": "in", "to": "out", "signals": ["logs"]}]
    assert one["nodes"][0]["class"] == "receiver"


def test_agent_list_filters_pagination_counts(srv: InProcessServer) -> None:
    for i in range(12):
        labels = {"env": "prod" if i % 2 else "dev", "rack": f"r{i % 3}"}
        srv.client.post(
            "/api/agent/v1/agents",
            json=registration(f"inst-list-{i:04d}", labels),
            headers=srv.auth(srv.enroll_token),
        )
    pub(srv, publish(sha(1), None, [group("prod", {"env": "prod"})]))
    h = admin(srv)
    everything = srv.client.get("/api/v1/agents?limit=5", headers=h).json
    assert everything["page"] == {"total": 12, "limit": 5, "offset": 0} and len(everything["items"]) == 5
    assert everything["counts"]["online"] == 12
    assert everything["counts"]["NoGroup"] == 6 and everything["counts"]["OutOfSync"] == 6
    page3 = srv.client.get("/api/v1/agents?limit=5&offset=10", headers=h).json
    assert len(page3["items"]) == 2
    names = [
        a["hostname"]
        for a in everything["items"]
        + srv.client.get("/api/v1/agents?limit=5&offset=5", headers=h).json["items"]
        + page3["items"]
    ]
    assert names == sorted(names) and len(set(names)) == 12
    prod = srv.client.get("/api/v1/agents?group=prod", headers=h).json
    assert prod["page"]["total"] == 6 and {a["group"] for a in prod["items"]} == {"prod"}
    both = srv.client.get("/api/v1/agents?label=env=prod&label=rack=r1", headers=h).json
    assert {a["labels"]["rack"] for a in both["items"]} == {"r1"} and both["page"]["total"] == 2
    nogroup = srv.client.get("/api/v1/agents?sync=NoGroup", headers=h).json
    assert nogroup["page"]["total"] == 6
    search = srv.client.get("/api/v1/agents?q=list-0011", headers=h).json
    assert [a["instance_id"] for a in search["items"]] == ["inst-list-0011"]


def test_events_time_range_and_runs(srv: InProcessServer, clock: Clock) -> None:
    r = srv.client.post(
        "/api/agent/v1/agents", json=registration("inst-ev-0001"), headers=srv.auth(srv.enroll_token)
    )
    agent_id, token = r.json["agent_id"], r.json["agent_token"]
    t0 = clock.now
    for state in ("starting", "running", "crashed", "running"):
        clock.advance(10)
        srv.client.post(
            f"/api/agent/v1/agents/{agent_id}/status",
            json={"collector_state": state, "uptime_s": 1},
            headers=srv.auth(token),
        )
    h = admin(srv)
    window = srv.client.get(
        f"/api/v1/agents/{agent_id}/events?kind=state&since={t0 + 15}&until={t0 + 35}", headers=h
    ).json
    assert [e["detail"]["to"] for e in window["items"]] == ["crashed", "running"]
    assert srv.client.get(f"/api/v1/agents/{agent_id}/events?kind=bogus", headers=h).status_code == 400

    now = datetime.fromtimestamp(clock.now, UTC).isoformat()
    run = {
        "started_at": now,
        "finished_at": now,
        "source": "file:///repo",
        "ref": "main",
        "commit_sha": sha(5),
        "outcome": "invalid",
        "timings_s": {"compile": 0.5},
        "diagnostics": [{"code": "CT101", "message": "cycle", "location": {"file": "p.yaml", "line": 3}}],
    }
    rec = srv.create_token("reconciler")
    assert srv.client.post("/api/v1/reconcile-runs", json=run, headers=srv.auth(rec)).status_code == 201
    runs = srv.client.get("/api/v1/reconcile-runs", headers=h).json
    assert runs["items"][0]["diagnostics"][0]["location"]["line"] == 3
    assert runs["items"][0]["outcome"] == "invalid" and runs["page"]["total"] == 1


def test_tokens_api(srv: InProcessServer) -> None:
    h = admin(srv)
    created = srv.client.post("/api/v1/tokens", json={"role": "viewer", "name": "grafana"}, headers=h)
    assert created.status_code == 201
    secret, token_id = created.json["secret"], created.json["token"]["id"]
    assert srv.client.get("/api/v1/whoami", headers=srv.auth(secret)).json["name"] == "grafana"
    listed = srv.client.get("/api/v1/tokens", headers=h).json["items"]
    assert secret not in str(listed) and any(t["id"] == token_id for t in listed)
    revoked = srv.client.delete(f"/api/v1/tokens/{token_id}", headers=h)
    assert revoked.status_code == 200 and revoked.json["revoked_at"]
    assert srv.client.get("/api/v1/whoami", headers=srv.auth(secret)).status_code == 401
    actions = [e["action"] for e in srv.client.get("/api/v1/audit", headers=h).json["items"]]
    assert "token.create" in actions and "token.revoke" in actions
    # the store keeps only hashes
    rows = srv.store.db.conn().execute("SELECT hash FROM tokens").fetchall()
    assert all(secret not in r[0] for r in rows)


def test_revision_by_prefix(srv: InProcessServer) -> None:
    full = "abcdef1" + "0" * 33
    pub(srv, publish(full, None, [group("edge")]))
    assert (
        srv.client.get("/api/v1/revisions/abcdef1", headers=admin(srv)).json["revision"]["commit_sha"] == full
    )
    pub(srv, publish("abcdef12" + "1" * 32, full, [group("edge")]))
    ambiguous = srv.client.get("/api/v1/revisions/abcdef1", headers=admin(srv))
    assert ambiguous.status_code == 404 and "ambiguous" in ambiguous.json["error"]["message"]


def test_delete_agent(srv: InProcessServer) -> None:
    r = srv.client.post(
        "/api/agent/v1/agents", json=registration("inst-gone-01"), headers=srv.auth(srv.enroll_token)
    )
    agent_id, token = r.json["agent_id"], r.json["agent_token"]
    poll = f"/api/agent/v1/agents/{agent_id}/config"
    assert srv.client.get(poll, headers=srv.auth(token)).json["error"]["code"] == "no_revision"  # cached
    operator = srv.create_token("operator")
    assert srv.client.delete(f"/api/v1/agents/{agent_id}", headers=srv.auth(operator)).status_code == 403
    gone = srv.client.delete(f"/api/v1/agents/{agent_id}", headers=admin(srv))
    assert gone.status_code == 200 and gone.json["id"] == agent_id
    assert srv.client.get(poll, headers=srv.auth(token)).json["error"]["code"] == "not_found"
    assert srv.client.get(f"/api/v1/agents/{agent_id}", headers=admin(srv)).status_code == 404
    assert srv.client.delete(f"/api/v1/agents/{agent_id}", headers=admin(srv)).status_code == 404
    audit = srv.client.get("/api/v1/audit?action=agent.delete", headers=admin(srv)).json["items"]
    assert audit[0]["target"] == agent_id
    again = srv.client.post(
        "/api/agent/v1/agents", json=registration("inst-gone-01"), headers=srv.auth(srv.enroll_token)
    )
    assert again.status_code == 200 and again.json["agent_id"] != agent_id
