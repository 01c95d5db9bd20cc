"""POST /v1/opamp with hand-built protobuf messages: register, config, APPLIED/FAILED, drift via the
effective config, restart, sequence gaps, health, and every refusal as an OpAMP error with a 4xx."""

from __future__ import annotations

import gzip
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas.common import config_hash
from schemas.opamp import CONTENT_TYPE, OPAMP_PATH, opamp_pb2
from tests.support.server import InProcessServer
from tests.webui.conftest import Clock
from tests.webui.helpers import group, publish, registration, sha
from tests.webui.opamp_helpers import (
    APPLIED,
    APPLYING,
    FAILED,
    FULL_STATE,
    Cap,
    HandAgent,
    description,
    effective,
    health,
)

CONFIG = "receivers: {}\n# edge v1\n"


def pub(srv: InProcessServer, body: dict[str, Any]) -> None:
    r = srv.client.post("/api/v1/revisions", json=body, headers=srv.auth(srv.admin_token))
    assert r.status_code == 201, r.json


def view(srv: InProcessServer, agent_id: str) -> Any:
    r = srv.client.get(f"/api/v1/agents/{agent_id}", headers=srv.auth(srv.admin_token))
    assert r.status_code == 200, r.json
    return r.json


def agent_id_of(srv: InProcessServer, agent: HandAgent) -> str:
    found = srv.store.opamp_agent(agent.instance_id)
    assert found is not None
    return found.agent_id


def registered(
    srv: InProcessServer, labels: dict[str, str] | None = None, clock: Clock | None = None, **kw: Any
) -> HandAgent:
    agent = HandAgent(srv.client, srv.enroll_token, clock=clock, **kw)
    answer = agent.send(agent_description=description("edge-host-1", labels or {"env": "prod"}))
    assert agent.last_status == 200, answer
    return agent


def test_register_labels_token_and_the_same_config_bytes_as_http(srv: InProcessServer) -> None:
    agent = HandAgent(srv.client, srv.enroll_token)
    first = agent.send(agent_description=description("edge-host-1", {"env": "prod", "tier": "edge"}))
    assert agent.last_status == 200
    assert first.instance_uid == agent.uid
    assert first.capabilities & opamp_pb2.ServerCapabilities_OffersRemoteConfig
    # The agent's own token comes back as the connection's Authorization header.
    offer = first.connection_settings
    assert agent.token is not None and agent.token.startswith("cta_")
    assert offer.hash and offer.opamp.destination_endpoint.endswith(OPAMP_PATH)
    assert not first.HasField("remote_config")  # nothing published yet
    aid = agent_id_of(srv, agent)
    v = view(srv, aid)
    assert v["instance_id"] == agent.instance_id and v["hostname"] == "edge-host-1"
    assert v["platform"] == "linux/amd64" and v["collector_version"] == "0.135.0"
    assert v["labels"]["env"] == "prod" and v["labels"]["service.name"] == "io.opentelemetry.collector"
    assert v["sync_status"] == "NoGroup"

    pub(srv, publish(sha(1), None, [group("edge", {"env": "prod"}, config=CONFIG)]))
    answer = agent.send()
    assert answer.HasField("remote_config")
    files = answer.remote_config.config.config_map
    assert list(files) == [""] and files[""].content_type == "text/yaml"
    # the same bytes and sha256 as the HTTP agent API serves to an HTTP agent of the same group
    r = srv.client.post(
        "/api/agent/v1/agents",
        json=registration("http-agent-1", {"env": "prod"}),
        headers=srv.auth(srv.enroll_token),
    )
    http = srv.client.get(
        f"/api/agent/v1/agents/{r.json['agent_id']}/config", headers=srv.auth(r.json["agent_token"])
    )
    assert files[""].body == http.data == CONFIG.encode()
    assert answer.remote_config.config_hash.hex() == http.headers["X-Ctrltower-Config-Hash"]
    assert answer.remote_config.config_hash.hex() == config_hash(CONFIG)
    # not sent again while the agent has it
    assert not agent.send().HasField("remote_config")


def test_applied_failed_and_drift_feed_the_sync_status(srv: InProcessServer, clock: Clock) -> None:
    pub(srv, publish(sha(1), None, [group("edge", {"env": "prod"}, config=CONFIG)]))
    agent = registered(srv, clock=clock)
    aid = agent_id_of(srv, agent)
    h1 = config_hash(CONFIG)
    assert view(srv, aid)["sync_status"] == "OutOfSync"

    agent.send(remote_config_status=agent.status(h1, APPLYING))
    assert view(srv, aid)["run_state"] == "starting"
    agent.send(remote_config_status=agent.status(h1, APPLIED), effective_config=effective(CONFIG.encode()))
    v = view(srv, aid)
    assert v["sync_status"] == "Synced" and v["reported_hash"] == h1 and v["run_state"] == "running"
    assert v["last_apply"]["result"] == "applied" and v["effective_revision"] == sha(1)

    # a local edit shows in the effective config: Drifted; back to the applied bytes: Synced
    agent.send(effective_config=effective(CONFIG.encode() + b"# edited by hand\n"))
    assert view(srv, aid)["sync_status"] == "Drifted"
    agent.send(effective_config=effective(CONFIG.encode()))
    assert view(srv, aid)["sync_status"] == "Synced"

    # a new revision the collector rejects: ApplyFailed with the agent's error, still running h1
    v2 = "receivers: {bogus: {}}\n"
    pub(srv, publish(sha(2), sha(1), [group("edge", {"env": "prod"}, config=v2)]))
    answer = agent.send()
    assert answer.remote_config.config.config_map[""].body == v2.encode()
    agent.send(remote_config_status=agent.status(config_hash(v2), FAILED, "unknown receiver bogus"))
    v = view(srv, aid)
    assert v["sync_status"] == "ApplyFailed" and v["reported_hash"] == h1
    assert v["last_apply"]["result"] == "failed" and "bogus" in v["last_apply"]["error"]
    kinds = [
        e["kind"]
        for e in srv.client.get(f"/api/v1/agents/{aid}/events", headers=srv.auth(srv.admin_token)).json[
            "items"
        ]
    ]
    assert {"registered", "applied", "drift", "apply_failed"} <= set(kinds)


def test_an_agent_without_status_reports_is_synced_by_its_effective_config(srv: InProcessServer) -> None:
    pub(srv, publish(sha(1), None, [group("edge", {"env": "prod"}, config=CONFIG)]))
    caps = (
        Cap.AgentCapabilities_ReportsStatus
        | Cap.AgentCapabilities_AcceptsRemoteConfig
        | (Cap.AgentCapabilities_ReportsEffectiveConfig)
    )
    agent = registered(srv, capabilities=caps)
    aid = agent_id_of(srv, agent)
    agent.send(effective_config=effective(CONFIG.encode()))
    assert view(srv, aid)["sync_status"] == "Synced"


def test_restart_command_and_commands_opamp_cannot_carry(srv: InProcessServer) -> None:
    pub(srv, publish(sha(1), None, [group("edge", {"env": "prod"}, config=CONFIG)]))
    agent = registered(srv)
    agent.send()  # takes the config
    aid = agent_id_of(srv, agent)
    op = srv.auth(srv.create_token("operator"))
    v = view(srv, aid)
    assert v["protocol"] == "opamp" and v["opamp"]["commands"] == ["restart"]
    assert "AcceptsRestartCommand" in v["opamp"]["capabilities"] and v["opamp"]["own_token"]
    # OpAMP has no stop: refused at once, nothing queued
    stop = srv.client.post(f"/api/v1/agents/{aid}/commands", json={"action": "stop"}, headers=op)
    assert stop.status_code == 409 and stop.json["error"]["code"] == "unsupported_command"
    restart = srv.client.post(f"/api/v1/agents/{aid}/commands", json={"action": "restart"}, headers=op)
    assert restart.status_code == 202
    answer = agent.send()
    assert answer.HasField("command") and answer.command.type == opamp_pb2.CommandType_Restart
    assert not answer.HasField("remote_config") and not answer.flags  # a command travels alone
    agent.send()  # the agent talks again after restarting: the restart is done
    [cmd] = srv.client.get(f"/api/v1/agents/{aid}/commands", headers=op).json["items"]
    assert cmd["action"] == "restart" and cmd["state"] == "done"


def test_restart_refused_for_an_agent_without_the_capability(srv: InProcessServer) -> None:
    agent = registered(srv)
    aid = agent_id_of(srv, agent)
    op = srv.auth(srv.create_token("operator"))
    # queued while it could restart; then it reconnects without the capability: the command fails
    assert (
        srv.client.post(f"/api/v1/agents/{aid}/commands", json={"action": "restart"}, headers=op).status_code
        == 202
    )
    agent.capabilities &= ~Cap.AgentCapabilities_AcceptsRestartCommand
    assert not agent.send().HasField("command")
    [cmd] = srv.client.get(f"/api/v1/agents/{aid}/commands", headers=op).json["items"]
    assert cmd["state"] == "failed" and "AcceptsRestartCommand" in cmd["error"]
    # and now it is refused up front
    again = srv.client.post(f"/api/v1/agents/{aid}/commands", json={"action": "restart"}, headers=op)
    assert again.status_code == 409 and "AcceptsRestartCommand" in again.json["error"]["message"]
    assert view(srv, aid)["opamp"]["commands"] == []


def test_sequence_gap_asks_for_full_state(srv: InProcessServer) -> None:
    agent = registered(srv)
    assert not agent.send().flags
    agent.seq += 3  # three messages lost (a reconnect)
    assert agent.send().flags & FULL_STATE
    assert not agent.send().flags  # the sequence goes on: no more asking
    # a first contact without a description is asked for it too
    bare = HandAgent(srv.client, srv.enroll_token)
    assert bare.send().flags & FULL_STATE and bare.last_status == 200


def test_health_makes_the_agent_degraded_and_disconnect_offline(srv: InProcessServer) -> None:
    agent = registered(srv)
    aid = agent_id_of(srv, agent)
    agent.send(health=health(True))
    assert view(srv, aid)["status"] == "online"
    agent.send(health=health(False, "exporter otlphttp: connection refused"))
    v = view(srv, aid)
    assert v["status"] == "degraded" and v["run_state"] == "crashed"
    fleet = srv.client.get("/api/v1/agents", headers=srv.auth(srv.admin_token)).json
    assert fleet["counts"]["degraded"] == 1 and fleet["counts"]["online"] == 0
    agent.send(health=health(True))
    assert view(srv, aid)["status"] == "online"
    agent.send(agent_disconnect=opamp_pb2.AgentDisconnect())
    assert view(srv, aid)["status"] == "offline"


def test_description_changes_move_the_agent_between_groups(srv: InProcessServer) -> None:
    pub(srv, publish(sha(1), None, [group("edge", {"env": "prod"}), group("lab", {"env": "lab"})]))
    agent = registered(srv)
    aid = agent_id_of(srv, agent)
    assert view(srv, aid)["group"] == "edge"
    answer = agent.send(agent_description=description("edge-host-1", {"env": "lab"}))
    assert view(srv, aid)["group"] == "lab"
    assert answer.remote_config.config.config_map[""].body == b"# group lab\nreceivers: {}\n"
    # the maintained fleet counts moved with it (the same as counting from scratch)
    kept = srv.store.stored_sync_counts("lab")
    srv.store.rebuild_status_counts()
    assert kept == srv.store.stored_sync_counts("lab") == {"OutOfSync": 1}
    assert srv.store.stored_sync_counts("edge") == {}


def test_enroll_token_agent_without_connection_settings(srv: InProcessServer) -> None:
    """An agent that cannot be handed a token keeps its enroll token: same record, no new tokens."""
    caps = Cap.AgentCapabilities_ReportsStatus | Cap.AgentCapabilities_AcceptsRemoteConfig
    agent = registered(srv, capabilities=caps)
    assert agent.token is None
    aid = agent_id_of(srv, agent)
    for _ in range(3):
        agent.send()
        assert agent.last_status == 200
    assert agent_id_of(srv, agent) == aid
    events = srv.client.get(
        f"/api/v1/agents/{aid}/events?kind=registered", headers=srv.auth(srv.admin_token)
    ).json
    assert events["page"]["total"] == 1


def test_own_token_is_required_once_issued(srv: InProcessServer) -> None:
    agent = registered(srv)
    other = registered(srv)
    assert agent.token and other.token
    agent.send(token=other.token)  # another agent's token is not this agent's
    assert agent.last_status == 401
    agent.send(token="cta_guessed")
    assert agent.last_status == 401
    assert agent.send().instance_uid == agent.uid and agent.last_status == 200


def test_reregistration_needs_the_agents_token_or_an_approval(srv: InProcessServer) -> None:
    agent = registered(srv)
    aid, token = agent_id_of(srv, agent), agent.token
    # someone with the enroll token claims this instance_uid: refused, the agent keeps its record and token
    answer = agent.send(token=srv.enroll_token, agent_description=description("impostor", {"env": "dev"}))
    assert agent.last_status == 409 and answer.HasField("error_response")
    assert view(srv, aid)["hostname"] == "edge-host-1" and agent.token == token
    assert agent.send().instance_uid == agent.uid and agent.last_status == 200
    # an operator approves one re-registration (a host reinstalled without its state): a new token
    op = srv.auth(srv.create_token("operator"))
    assert srv.client.post(f"/api/v1/agents/{aid}/approve-reregistration", headers=op).status_code == 200
    agent.token = None
    agent.send(agent_description=description("edge-host-1", {"env": "prod"}))
    assert agent.last_status == 200 and agent.token not in (None, token)
    assert agent_id_of(srv, agent) == aid
    agent.send(token=token)
    assert agent.last_status == 401  # the old token stopped working


def test_scoped_enroll_token_labels_only_its_keys(srv: InProcessServer) -> None:
    scoped = srv.store.create_token("enroll", "edge-only", labels={"env": ["prod"]}).secret
    agent = HandAgent(srv.client, scoped)
    agent.send(agent_description=description("edge-host-9", {"env": "prod", "team": "a"}))
    assert agent.last_status == 200
    v = view(srv, agent_id_of(srv, agent))
    assert v["labels"] == {"env": "prod"} and v["hostname"] == "edge-host-9"  # attributes still describe it
    # a value the scope does not allow is refused, at enrolment and in a later description
    other = HandAgent(srv.client, scoped)
    answer = other.send(agent_description=description("lab-host", {"env": "lab"}))
    assert other.last_status == 403 and "env" in answer.error_response.error_message
    agent.send(agent_description=description("edge-host-9", {"env": "lab"}))
    assert agent.last_status == 403
    assert view(srv, agent_id_of(srv, agent))["labels"] == {"env": "prod"}


def _error(r: Any) -> opamp_pb2.ServerErrorResponse:
    assert r.mimetype == CONTENT_TYPE
    answer = opamp_pb2.ServerToAgent()
    answer.ParseFromString(r.data)
    assert answer.HasField("error_response")
    return answer.error_response


def test_refusals_are_opamp_errors_with_4xx(tmp_path: Any) -> None:
    srv = InProcessServer(tmp_path / "d", max_body_bytes=4096)
    try:
        agent = HandAgent(srv.client, srv.enroll_token)
        good = agent.message(agent_description=description("h", {})).SerializeToString()
        cases = [
            (agent.post_raw(b"\xff\xff\xff\xff", srv.enroll_token), 400, "malformed"),
            (agent.post_raw(b"", srv.enroll_token), 400, "16 bytes"),
            (agent.post_raw(good, None), 401, "enroll token"),
            (agent.post_raw(good, "ctt_not_a_token"), 401, "enroll token"),
            (agent.post_raw(good, srv.create_token("viewer")), 401, "enroll token"),
            (agent.post_raw(good, srv.enroll_token, "application/json"), 415, "Content-Type"),
            (agent.post_raw(good + b"\x0a" * 8000, srv.enroll_token), 413, "too large"),
        ]
        for response, status, text in cases:
            assert response.status_code == status, (status, response.data)
            err = _error(response)
            assert err.type == opamp_pb2.ServerErrorResponseType_BadRequest
            assert text in err.error_message, err.error_message
        # gzip bodies are decompressed within the same limit; a gzip bomb or garbage is refused
        zipped = gzip.compress(good)
        r = srv.client.post(
            OPAMP_PATH,
            data=zipped,
            headers={
                "Content-Type": CONTENT_TYPE,
                "Content-Encoding": "gzip",
                "Authorization": f"Bearer {srv.enroll_token}",
            },
        )
        assert r.status_code == 200, r.data
        for body, encoding, status in (
            (gzip.compress(b"\x0a" * 100_000), "gzip", 413),
            (b"not gzip at all", "gzip", 400),
            (zipped[:-8], "gzip", 400),
            (good, "br", 415),
        ):
            r = srv.client.post(
                OPAMP_PATH,
                data=body,
                headers={
                    "Content-Type": CONTENT_TYPE,
                    "Content-Encoding": encoding,
                    "Authorization": f"Bearer {srv.enroll_token}",
                },
            )
            assert r.status_code == status, (encoding, r.data)
            _error(r)
        # an instance_uid that is not 16 bytes
        short = opamp_pb2.AgentToServer(instance_uid=b"abc").SerializeToString()
        assert agent.post_raw(short, srv.enroll_token).status_code == 400
        # nothing was registered by any of them (but the gzip one)
        r = srv.client.get("/api/v1/agents", headers=srv.auth(srv.admin_token))
        assert r.json["page"]["total"] == 1
        # GET is not OpAMP
        assert srv.client.get(OPAMP_PATH).status_code == 405
    finally:
        srv.close()


def test_fuzzed_messages_never_answer_5xx(tmp_path: Any) -> None:
    """Random bytes and mutated real messages, with the enroll token: every answer is a ServerToAgent with
    a 200 (it parsed and made sense) or an OpAMP error with a 4xx, never a 5xx or a traceback."""
    srv = InProcessServer(tmp_path / "fuzz")
    pub(srv, publish(sha(1), None, [group("edge", {"env": "prod"}, config=CONFIG)]))
    seed = HandAgent(srv.client, srv.enroll_token)
    valid = seed.message(
        agent_description=description("fuzz-host", {"env": "prod"}),
        health=health(True),
        effective_config=effective(CONFIG.encode()),
        remote_config_status=seed.status(config_hash(CONFIG), APPLIED),
    ).SerializeToString()

    def mutate(data: bytes, flips: list[tuple[int, int]]) -> bytes:
        out = bytearray(data)
        for pos, value in flips:
            out[pos % len(out)] = value
        return bytes(out)

    bodies = st.one_of(
        st.binary(max_size=300),
        st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), max_size=6).map(
            lambda flips: mutate(valid, flips)
        ),
    )
    statuses: set[int] = set()

    @given(body=bodies)
    @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    def run(body: bytes) -> None:
        r = seed.post_raw(body, srv.enroll_token)
        assert r.status_code < 500, (r.status_code, body)
        answer = opamp_pb2.ServerToAgent()
        answer.ParseFromString(r.data)
        assert (r.status_code == 200) != answer.HasField("error_response")
        statuses.add(r.status_code)

    try:
        run()
    finally:
        srv.close()
    assert 200 in statuses and 400 in statuses, statuses
