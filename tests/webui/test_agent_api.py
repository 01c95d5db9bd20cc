"""Agent API in-process: registration, config with ETag/304, no_group/no_revision, status, commands."""

from __future__ import annotations

from typing import Any

from schemas.common import config_hash
from tests.support.server import InProcessServer
from tests.webui.conftest import Clock
from tests.webui.helpers import group, iso, publish, registration, sha


def register(
    srv: InProcessServer, instance: str, labels: dict[str, str] | None = None, proof: str | None = None
) -> tuple[str, str]:
    extra = {"agent_token": proof} if proof else {}
    r = srv.client.post(
        "/api/agent/v1/agents",
        json=registration(instance, labels, **extra),
        headers=srv.auth(srv.enroll_token),
    )
    assert r.status_code == 200, r.json
    return r.json["agent_id"], r.json["agent_token"]


def pub(srv: InProcessServer, body: dict[str, Any]) -> Any:
    return srv.client.post("/api/v1/revisions", json=body, headers=srv.auth(srv.admin_token))


def config(srv: InProcessServer, agent_id: str, token: str, etag: str | None = None) -> Any:
    headers = srv.auth(token)
    if etag:
        headers["If-None-Match"] = etag
    return srv.client.get(f"/api/agent/v1/agents/{agent_id}/config", headers=headers)


def status(srv: InProcessServer, agent_id: str, token: str, **report: Any) -> Any:
    body = {"collector_state": "running", "uptime_s": 1.0, **report}
    return srv.client.post(f"/api/agent/v1/agents/{agent_id}/status", json=body, headers=srv.auth(token))


def test_reregistration_keeps_id_and_revokes_old_token(srv: InProcessServer) -> None:
    a1, t1 = register(srv, "inst-000001", {"env": "prod"})
    a2, t2 = register(srv, "inst-000001", {"env": "dev"}, proof=t1)  # the agent's own token: it is itself
    assert a1 == a2 and t1 != t2
    assert config(srv, a1, t1).status_code == 401
    assert config(srv, a1, t2).json["error"]["code"] == "no_revision"
    agents = srv.client.get("/api/v1/agents", headers=srv.auth(srv.admin_token)).json
    assert agents["page"]["total"] == 1
    assert agents["items"][0]["labels"] == {"env": "dev"}


def test_config_etag_304_headers_and_group_resolution(srv: InProcessServer) -> None:
    a_prod, t_prod = register(srv, "inst-prod-1", {"env": "prod", "tier": "edge"})
    a_dev, t_dev = register(srv, "inst-dev-01", {"env": "dev"})
    a_none, t_none = register(srv, "inst-none-1", {"env": "lab"})
    groups = [
        group("all-prod", {"env": "prod"}, priority=1),
        group("edge", {"env": "prod", "tier": "edge"}, priority=5),
        group("b-dev", {"env": "dev"}, priority=0),
        group("a-dev", {"env": "dev"}, priority=0),
    ]
    assert pub(srv, publish(sha(1), None, groups)).status_code == 201
    r = config(srv, a_prod, t_prod)
    assert r.status_code == 200
    assert r.headers["X-Ctrltower-Group"] == "edge"  # highest priority wins
    assert r.headers["X-Ctrltower-Revision"] == sha(1)
    assert r.data == groups[1]["config"].encode()
    assert r.headers["ETag"] == f'"{config_hash(r.data)}"' == f'"{r.headers["X-Ctrltower-Config-Hash"]}"'
    assert r.mimetype == "text/yaml"
    r304 = config(srv, a_prod, t_prod, r.headers["ETag"])
    assert r304.status_code == 304 and r304.data == b""
    assert r304.headers["ETag"] == r.headers["ETag"]
    assert config(srv, a_prod, t_prod, 'W/"nope", ' + r.headers["ETag"]).status_code == 304
    assert config(srv, a_prod, t_prod, '"other"').status_code == 200
    assert config(srv, a_dev, t_dev).headers["X-Ctrltower-Group"] == "a-dev"  # tie: by name
    r_none = config(srv, a_none, t_none)
    assert r_none.status_code == 404 and r_none.json["error"]["code"] == "no_group"

    # A new revision changes the answer for an old ETag (cache invalidated by the publish).
    new_edge = group("edge", {"env": "prod", "tier": "edge"}, priority=5, config="# v2\n")
    assert pub(srv, publish(sha(2), sha(1), [new_edge])).status_code == 201
    r2 = config(srv, a_prod, t_prod, r.headers["ETag"])
    assert r2.status_code == 200 and r2.data == b"# v2\n"
    assert config(srv, a_dev, t_dev).json["error"]["code"] == "no_group"  # its groups are gone


def test_config_auth_errors(srv: InProcessServer) -> None:
    agent_id, token = register(srv, "inst-000002")
    _other_id, other_token = register(srv, "inst-000003")
    url = f"/api/agent/v1/agents/{agent_id}/config"
    assert srv.client.get(url).json["error"]["code"] == "unauthorized"
    assert srv.client.get(url, headers=srv.auth(other_token)).status_code == 401
    assert srv.client.get(url, headers=srv.auth(srv.admin_token)).status_code == 401
    r = srv.client.get("/api/agent/v1/agents/ag_unknown/config", headers=srv.auth(token))
    assert r.status_code == 404 and r.json["error"]["code"] == "not_found"
    r = srv.client.post(f"/api/agent/v1/agents/{agent_id}/status", json={}, headers=srv.auth(other_token))
    assert r.status_code == 401


def test_registration_needs_enroll_role(srv: InProcessServer) -> None:
    body = registration("inst-000004")
    assert srv.client.post("/api/agent/v1/agents", json=body).status_code == 401
    viewer = srv.create_token("viewer")
    assert srv.client.post("/api/agent/v1/agents", json=body, headers=srv.auth(viewer)).status_code == 403
    admin = srv.client.post("/api/agent/v1/agents", json=body, headers=srv.auth(srv.admin_token))
    assert admin.status_code == 200


def test_status_commands_and_acks(srv: InProcessServer, clock: Clock) -> None:
    agent_id, token = register(srv, "inst-000005")
    operator = srv.create_token("operator", "alice")
    r = srv.client.post(
        f"/api/v1/agents/{agent_id}/commands", json={"action": "restart"}, headers=srv.auth(operator)
    )
    assert r.status_code == 202 and r.json["state"] == "queued" and r.json["issued_by"] == "alice"
    command_id = r.json["id"]
    first = status(srv, agent_id, token).json
    assert [c["id"] for c in first["commands"]] == [command_id]
    assert first["poll_interval_s"] == 10.0
    again = status(srv, agent_id, token).json  # not acked yet: sent again
    assert [c["action"] for c in again["commands"]] == ["restart"]
    done = status(srv, agent_id, token, acks=[{"id": command_id, "result": "done"}]).json
    assert done["commands"] == []
    cmds = srv.client.get(f"/api/v1/agents/{agent_id}/commands", headers=srv.auth(operator)).json["items"]
    assert cmds[0]["state"] == "done" and cmds[0]["acked_at"] is not None
    audit = srv.client.get("/api/v1/audit?action=command.restart", headers=srv.auth(operator)).json
    assert audit["items"][0]["actor"] == "alice" and audit["items"][0]["target"] == agent_id
    kinds = [
        e["kind"]
        for e in srv.client.get(f"/api/v1/agents/{agent_id}/events", headers=srv.auth(operator)).json["items"]
    ]
    assert {"registered", "command", "command_ack", "state"} <= set(kinds)
    # acks for another agent's command are ignored
    other_id, other_token = register(srv, "inst-000006")
    r = srv.client.post(
        f"/api/v1/agents/{agent_id}/commands", json={"action": "stop"}, headers=srv.auth(operator)
    )
    status(srv, other_id, other_token, acks=[{"id": r.json["id"], "result": "done"}])
    assert [c["action"] for c in status(srv, agent_id, token).json["commands"]] == ["stop"]


def test_sync_status_rules(srv: InProcessServer, clock: Clock) -> None:
    agent_id, token = register(srv, "inst-000007", {"env": "prod"})

    def sync() -> str:
        return str(
            srv.client.get(f"/api/v1/agents/{agent_id}", headers=srv.auth(srv.admin_token)).json[
                "sync_status"
            ]
        )

    def report_running_h1(**report: Any) -> None:
        """The agent runs g1's config (h1) throughout; each report adds what happened since."""
        assert status(srv, agent_id, token, effective_config_hash=h1, **report).status_code == 200

    def apply_result(config_hash: str, rev: str, result: str = "applied", **extra: str) -> dict[str, str]:
        """The report's last_apply: the agent tried `config_hash` of revision `rev` just now."""
        at = iso(clock.now)
        return {"result": result, "config_hash": config_hash, "revision": rev, "at": at, **extra}

    assert sync() == "NoGroup"  # nothing published
    g1 = group("edge", {"env": "prod"})
    pub(srv, publish(sha(1), None, [g1]))
    assert sync() == "OutOfSync"
    h1 = g1["config_hash"]
    report_running_h1(last_apply=apply_result(h1, sha(1)))
    assert sync() == "Synced"
    clock.advance(5)
    report_running_h1(drift_events=[{"at": iso(clock.now), "local_hash": None, "desired_hash": h1}])
    assert sync() == "Drifted"
    clock.advance(5)
    report_running_h1(last_apply=apply_result(h1, sha(1)))
    assert sync() == "Synced"
    g2 = group("edge", {"env": "prod"}, config="# broken\n")
    pub(srv, publish(sha(2), sha(1), [g2]))
    assert sync() == "OutOfSync"
    clock.advance(5)
    report_running_h1(
        last_apply=apply_result(g2["config_hash"], sha(2), result="failed", error="collector rejected it")
    )
    view = srv.client.get(f"/api/v1/agents/{agent_id}", headers=srv.auth(srv.admin_token)).json
    assert view["sync_status"] == "ApplyFailed"
    assert view["desired_hash"] == g2["config_hash"] and view["reported_hash"] == h1
    assert view["last_apply"]["error"] == "collector rejected it"
    events = srv.client.get(
        f"/api/v1/agents/{agent_id}/events?kind=apply_failed,applied", headers=srv.auth(srv.admin_token)
    ).json["items"]
    assert [e["kind"] for e in events] == ["apply_failed", "applied", "applied"]
    pub(srv, publish(sha(3), sha(2), [group("other", {"env": "dev"})]))
    assert sync() == "NoGroup"


def test_offline_and_degraded(srv: InProcessServer, clock: Clock, failing: set[str]) -> None:
    a1, t1 = register(srv, "inst-000008")
    a2, _ = register(srv, "inst-000009")
    a3, _ = register(srv, "inst-000010")
    failing.add(a3)

    def statuses() -> dict[str, str]:
        items = srv.client.get("/api/v1/agents", headers=srv.auth(srv.admin_token)).json["items"]
        return {i["id"]: i["status"] for i in items}

    assert statuses() == {a1: "online", a2: "online", a3: "degraded"}
    clock.advance(29)  # 3 poll intervals of 10 s: not yet
    status(srv, a1, t1)
    assert statuses()[a2] == "online"
    clock.advance(2)
    assert statuses() == {a1: "online", a2: "offline", a3: "offline"}
    body = srv.client.get("/api/v1/agents?status=offline", headers=srv.auth(srv.admin_token)).json
    assert body["page"]["total"] == 2
    assert body["counts"]["offline"] == 2 and body["counts"]["online"] == 1


def test_unknown_agent_status_is_404(srv: InProcessServer) -> None:
    _, token = register(srv, "inst-000011")
    r = srv.client.post(
        "/api/agent/v1/agents/ag_nope/status",
        json={"collector_state": "running", "uptime_s": 0},
        headers=srv.auth(token),
    )
    assert r.status_code == 404 and r.json["error"]["code"] == "not_found"


def test_fast_path_and_flask_route_agree(srv: InProcessServer) -> None:
    """GET is answered by the WSGI fast path, HEAD by the Flask route: same status and headers."""
    agent_id, token = register(srv, "inst-fast-01", {"env": "prod"})
    stranger_id, stranger_token = register(srv, "inst-fast-02", {"env": "lab"})
    g = group("edge", {"env": "prod"})
    pub(srv, publish(sha(1), None, [g]))
    cases = [
        (agent_id, srv.auth(token)),
        (agent_id, {**srv.auth(token), "If-None-Match": f'"{g["config_hash"]}"'}),
        (agent_id, {}),
        (agent_id, srv.auth(stranger_token)),
        (stranger_id, srv.auth(stranger_token)),
        ("ag_missing", srv.auth(token)),
    ]
    for target, headers in cases:
        url = f"/api/agent/v1/agents/{target}/config"
        get = srv.client.get(url, headers=headers)
        head = srv.client.head(url, headers=headers)
        assert get.status_code == head.status_code, (target, headers)
        for name in ("ETag", "X-Ctrltower-Revision", "X-Ctrltower-Group", "X-Ctrltower-Config-Hash"):
            assert get.headers.get(name) == head.headers.get(name)
        assert get.headers.get("Content-Length") == head.headers.get("Content-Length"), (
            get.headers,
            head.headers,
        )
        if get.status_code >= 400:
            assert get.mimetype == head.mimetype == "application/json"


def test_status_rejects_integers_sqlite_cannot_hold(srv: InProcessServer) -> None:
    agent_id, token = register(srv, "inst-int-001")
    r = status(srv, agent_id, token, collector_pid=2**70, acks=[{"id": 2**64, "result": "done"}])
    assert r.status_code == 422 and r.json["error"]["details"] == {"fields": ["acks.0.id", "collector_pid"]}


def test_repeated_drift_events_are_recorded_once(srv: InProcessServer, clock: Clock) -> None:
    agent_id, token = register(srv, "inst-drift-1")
    drift = [{"at": iso(clock.now), "local_hash": None, "desired_hash": "d" * 64}]
    for _ in range(3):
        status(srv, agent_id, token, drift_events=drift)
    clock.advance(1)
    status(
        srv,
        agent_id,
        token,
        drift_events=[*drift, {"at": iso(clock.now), "local_hash": "e" * 64, "desired_hash": "d" * 64}],
    )
    events = srv.client.get(f"/api/v1/agents/{agent_id}/events?kind=drift", headers=srv.auth(srv.admin_token))
    assert [e["detail"]["local_hash"] for e in events.json["items"]] == ["e" * 64, None]


def test_status_types_are_strict(srv: InProcessServer) -> None:
    """What the OpenAPI document says is what is accepted: no false for an integer, no "1" for a number."""
    agent_id, token = register(srv, "inst-strict-1")
    assert status(srv, agent_id, token, collector_pid=False).status_code == 422
    assert status(srv, agent_id, token, uptime_s="1").status_code == 422
    assert status(srv, agent_id, token, collector_pid=12, uptime_s=3).status_code == 200
