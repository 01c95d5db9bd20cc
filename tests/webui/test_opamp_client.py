"""/v1/opamp driven by an independent OpAMP client: PyPI's `opentelemetry-opamp-client` (0.5b0, pinned in
pyproject's dev extra) against the real server process on 127.0.0.1.

What that client can and cannot do, and so what these tests use of it:
- it speaks OpAMP over HTTP with `requests`; its default capabilities are ReportsStatus, ReportsHeartbeat,
  AcceptsRemoteConfig, ReportsRemoteConfig, ReportsEffectiveConfig. It has no AcceptsOpAMPConnectionSettings,
  so it never takes its own token: it keeps authenticating with the enroll token that registered it
  (the documented mode for such agents, docs/opamp.md);
- its `decode_remote_config` parses only JSON config files, so the tests read our YAML from the
  AgentRemoteConfig's config map directly (the bytes the collector would run);
- its messages use its own generated protobuf package (`opamp.proto`, older gencode): only the wire format
  is shared with ctrltower's `opamp.proto.v1` modules, which is the point of an independent client.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from schemas.common import config_hash
from tests.support.ready import wait_until
from tests.support.server import ServerProcess  # the live_server fixture comes from conftest.py
from tests.webui.helpers import group, publish, sha

opamp_client = pytest.importorskip("opentelemetry._opamp.client")
from opentelemetry._opamp.agent import OpAMPAgent  # noqa: E402
from opentelemetry._opamp.callbacks import OpAMPCallbacks  # noqa: E402
from opentelemetry._opamp.proto import opamp_pb2 as theirs  # noqa: E402
from opentelemetry._opamp.transport.requests import RequestsTransport  # noqa: E402

CONFIG = "receivers: {}\n# python client v1\n"
WAIT_S = 30.0


def agent_view(admin: httpx.Client, hostname: str) -> dict[str, Any] | None:
    items = admin.get("/api/v1/agents", params={"q": hostname}).json()["items"]
    return items[0] if items else None


@pytest.fixture
def admin(live_server: ServerProcess) -> Iterator[httpx.Client]:
    with live_server.client(live_server.admin_token) as client:
        yield client


def publish_edge(admin: httpx.Client) -> None:
    body = publish(sha(1), None, [group("edge", {"env": "prod"}, config=CONFIG)])
    assert admin.post("/api/v1/revisions", json=body).status_code == 201


def make_client(srv: ServerProcess, host: str, **kw: Any) -> Any:
    return opamp_client.OpAMPClient(
        endpoint=f"{srv.base_url}/v1/opamp",
        headers={"Authorization": f"Bearer {srv.enroll_token}"},
        timeout_millis=10_000,
        agent_identifying_attributes={"service.name": "python-app", "service.version": "1.2.3"},
        agent_non_identifying_attributes={"host.name": host, "env": "prod"},
        **kw,
    )


class ApplyingCallbacks(OpAMPCallbacks):
    """What a real agent does with a remote config: apply it (here: accept unless it says `bogus`)
    and report the outcome and the effective config."""

    def __init__(self) -> None:
        self.received: list[bytes] = []

    def on_message(self, agent: Any, client: Any, message: Any) -> None:
        if message.remote_config is None:
            return
        body = message.remote_config.config.config_map[""].body
        self.received.append(body)
        config_hash_bytes = message.remote_config.config_hash
        if b"bogus" in body:
            status = client.update_remote_config_status(
                config_hash_bytes, theirs.RemoteConfigStatuses_FAILED, "unknown receiver bogus"
            )
        else:
            status = client.update_remote_config_status(
                config_hash_bytes, theirs.RemoteConfigStatuses_APPLIED
            )
            client.update_effective_config({"": body}, "text/yaml")
        if status is not None:
            agent.send(client.build_full_state_message())


def test_the_python_client_registers_applies_and_fails(
    live_server: ServerProcess, admin: httpx.Client
) -> None:
    publish_edge(admin)
    callbacks = ApplyingCallbacks()
    client = make_client(live_server, "py-host-1")
    agent = OpAMPAgent(interval=0.5, callbacks=callbacks, client=client, initial_backoff=0.2)
    agent.start()
    try:
        wait_until(
            lambda: (v := agent_view(admin, "py-host-1")) is not None and v["sync_status"] == "Synced",
            WAIT_S,
            interval=0.1,
            what="Synced",
        )
        view = agent_view(admin, "py-host-1")
        assert view is not None
        assert view["labels"]["service.name"] == "python-app" and view["collector_version"] == "1.2.3"
        assert view["reported_hash"] == config_hash(CONFIG)
        assert callbacks.received[0] == CONFIG.encode()

        broken = "receivers: {bogus: {}}\n"
        body = publish(sha(2), sha(1), [group("edge", {"env": "prod"}, config=broken)])
        assert admin.post("/api/v1/revisions", json=body).status_code == 201
        wait_until(
            lambda: agent_view(admin, "py-host-1")["sync_status"] == "ApplyFailed",  # type: ignore[index]
            WAIT_S,
            interval=0.1,
            what="ApplyFailed",
        )
        view = agent_view(admin, "py-host-1")
        assert view is not None and "bogus" in view["last_apply"]["error"]
        assert view["reported_hash"] == config_hash(CONFIG)  # still running the last good one
    finally:
        agent.stop(timeout=10)
    # its AgentDisconnect on stop makes it offline at once
    assert agent_view(admin, "py-host-1")["status"] == "offline"  # type: ignore[index]


class DroppingTransport(RequestsTransport):
    """Loses the next `drop` messages, as a broken connection would (the client still counts them)."""

    def __init__(self) -> None:
        super().__init__()
        self.drop = 0

    def send(self, **kw: Any) -> Any:
        if self.drop:
            self.drop -= 1
            raise ConnectionError("dropped by the test")
        return super().send(**kw)


def test_drift_sequence_gap_and_restart_with_the_python_client(
    live_server: ServerProcess,
    admin: httpx.Client,
) -> None:
    publish_edge(admin)
    transport = DroppingTransport()
    caps = (
        theirs.AgentCapabilities_ReportsStatus
        | theirs.AgentCapabilities_AcceptsRemoteConfig
        | theirs.AgentCapabilities_ReportsRemoteConfig
        | theirs.AgentCapabilities_ReportsEffectiveConfig
        | theirs.AgentCapabilities_AcceptsRestartCommand
    )
    client = make_client(live_server, "py-host-2", transport=transport, capabilities=caps)
    first = client.send(client.build_full_state_message())
    assert not first.HasField("error_response")
    remote = first.remote_config
    assert remote.config.config_map[""].body == CONFIG.encode()
    assert remote.config_hash.hex() == config_hash(CONFIG)

    status = client.update_remote_config_status(remote.config_hash, theirs.RemoteConfigStatuses_APPLIED)
    client.update_effective_config({"": CONFIG}, "text/yaml")
    assert status is not None
    client.send(client.build_full_state_message())
    assert agent_view(admin, "py-host-2")["sync_status"] == "Synced"  # type: ignore[index]

    # drift: the effective config changes under the same applied hash
    client.update_effective_config({"": CONFIG + "# edited\n"}, "text/yaml")
    client.send(client.build_full_state_message())
    assert agent_view(admin, "py-host-2")["sync_status"] == "Drifted"  # type: ignore[index]

    # two messages lost: the next one skips sequence numbers and the server asks for the full state
    transport.drop = 2
    for _ in range(2):
        with pytest.raises(Exception, match="dropped"):
            client.send(client.build_heartbeat_message())
    answer = client.send(client.build_heartbeat_message())
    assert answer.flags & theirs.ServerToAgentFlags_ReportFullState
    assert not client.send(client.build_heartbeat_message()).flags

    # restart: queued by an operator, carried as the OpAMP restart command
    view = agent_view(admin, "py-host-2")
    assert view is not None
    with live_server.client(live_server.create_token("operator")) as op:
        assert op.post(f"/api/v1/agents/{view['id']}/commands", json={"action": "restart"}).status_code == 202
        answer = client.send(client.build_heartbeat_message())
        assert answer.HasField("command") and answer.command.type == theirs.CommandType_Restart
        client.send(client.build_heartbeat_message())
        [cmd] = op.get(f"/api/v1/agents/{view['id']}/commands").json()["items"]
        assert cmd["state"] == "done"


def test_unknown_instance_without_enroll_token_is_an_error_for_the_client(live_server: ServerProcess) -> None:
    client = opamp_client.OpAMPClient(
        endpoint=f"{live_server.base_url}/v1/opamp",
        headers={"Authorization": "Bearer ctt_wrong"},
        agent_identifying_attributes={"service.name": "x"},
    )
    # the requests transport raises on the 4xx; the body is the OpAMP error response
    with pytest.raises(Exception, match="401"):
        client.send(client.build_full_state_message())
    r = httpx.post(
        f"{live_server.base_url}/v1/opamp",
        content=client.build_full_state_message(),
        headers={"Content-Type": "application/x-protobuf", "Authorization": "Bearer ctt_wrong"},
    )
    answer = theirs.ServerToAgent()
    answer.ParseFromString(r.content)
    assert r.status_code == 401 and answer.HasField("error_response")
    assert "enroll token" in answer.error_response.error_message
