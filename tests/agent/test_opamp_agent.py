"""`ctrltower agent --protocol opamp` against the real server app (in-process, through httpx's WSGI
transport): enrolment and the kept token, losing the token, full state on request, config hashes."""

from __future__ import annotations

import logging
import stat
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry

from agent.opamp_agent import OpampAgent, instance_uid
from agent.settings import AgentSettings
from agent.state import StoredConfig
from schemas.common import config_hash
from schemas.opamp import opamp_pb2
from tests.support.server import InProcessServer

pytestmark = pytest.mark.collector  # the agent asks the real collector binary for its version


@pytest.fixture
def srv(tmp_path: Path) -> Iterator[InProcessServer]:
    server = InProcessServer(tmp_path / "server")
    yield server
    server.close()


def make_agent(srv: InProcessServer, tmp_path: Path, collector_bin: Path) -> OpampAgent:
    settings = AgentSettings(
        server="http://ctrltower.test",
        enroll_token=srv.enroll_token,
        collector=collector_bin,
        config_path=tmp_path / "collector.yaml",
        state_dir=tmp_path / "state",
        labels={"role": "edge"},
        hostname="unit-host",
        backoff_initial_s=0.01,
    )
    return OpampAgent(settings, CollectorRegistry(), transport=httpx.WSGITransport(app=srv.app))


def agents(srv: InProcessServer) -> list[dict[str, object]]:
    items = srv.client.get("/api/v1/agents", headers=srv.auth(srv.admin_token)).json["items"]
    assert isinstance(items, list)
    return items


def test_enrols_keeps_its_token_and_enrols_again_when_it_is_refused(
    srv: InProcessServer, tmp_path: Path, collector_bin: Path
) -> None:
    agent = make_agent(srv, tmp_path, collector_bin)
    try:
        assert agent.message().HasField("agent_description")  # the first message describes the agent
        agent.server_cycle()
        assert agent.own_token is not None and agent.own_token.startswith("cta_")
        token_file = tmp_path / "state" / "opamp_token"
        assert token_file.read_text().strip() == agent.own_token
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        [view] = agents(srv)
        assert view["hostname"] == "unit-host" and view["instance_id"] == str(uuid.UUID(bytes=agent.uid))
        assert view["labels"]["role"] == "edge"  # type: ignore[index]
        assert not agent.message().HasField("agent_description")  # said once

        # the operator forgets the agent: its token stops working, it enrols again as a new record
        srv.client.delete(f"/api/v1/agents/{view['id']}", headers=srv.auth(srv.admin_token))
        agent.server_cycle()
        assert agent.own_token is None and not token_file.exists() and agent.full_state
        agent.server_cycle()
        [again] = agents(srv)
        assert again["id"] != view["id"] and agent.own_token is not None
        assert again["instance_id"] == view["instance_id"]
    finally:
        agent.close()


def test_restarted_agent_uses_the_kept_token(
    srv: InProcessServer, tmp_path: Path, collector_bin: Path
) -> None:
    first = make_agent(srv, tmp_path, collector_bin)
    first.server_cycle()
    token = first.own_token
    first.close()
    second = make_agent(srv, tmp_path, collector_bin)
    try:
        assert second.own_token == token and second.uid == first.uid
        second.server_cycle()
        assert second.own_token == token  # not re-registered: no new token
        events = srv.client.get(
            f"/api/v1/agents/{agents(srv)[0]['id']}/events?kind=registered", headers=srv.auth(srv.admin_token)
        ).json
        assert events["page"]["total"] == 1
    finally:
        second.close()


def test_full_state_on_request_and_config_hash_checked(
    srv: InProcessServer, tmp_path: Path, collector_bin: Path, caplog: pytest.LogCaptureFixture
) -> None:
    agent = make_agent(srv, tmp_path, collector_bin)
    try:
        agent.server_cycle()
        asked = opamp_pb2.ServerToAgent(flags=opamp_pb2.ServerToAgentFlags_ReportFullState)
        assert agent.handle(asked) is True
        assert agent.message().HasField("agent_description")

        # the effective config is the file at the config path; a drift it undid is reported once
        data = b"receivers: {}\n"
        agent.desired = StoredConfig(data, config_hash(data), None, None)
        agent.applier.write(data)
        assert agent.message().effective_config.config_map.config_map[""].body == data
        agent.found_drift = b"edited"
        assert agent.message().effective_config.config_map.config_map[""].body == b"edited"
        agent.desired = None
        (tmp_path / "collector.yaml").unlink()

        remote = opamp_pb2.AgentRemoteConfig(config_hash=b"\x00" * 32)
        remote.config.config_map[""].body = b"receivers: {}\n"
        with caplog.at_level(logging.ERROR, logger="ctrltower.agent.opamp"):
            agent.take_config(remote)
        assert agent.desired is None and not (tmp_path / "collector.yaml").exists()
        assert "does not match its config_hash" in caplog.text
    finally:
        agent.close()


def test_instance_uid_is_the_persistent_instance_id() -> None:
    hex_id = uuid.uuid4().hex
    assert instance_uid(f"ct-{hex_id}") == uuid.UUID(hex=hex_id).bytes
    assert instance_uid("my-own-host-id") == instance_uid("my-own-host-id")
    assert len(instance_uid("my-own-host-id")) == 16
