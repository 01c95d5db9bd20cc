"""OpAMP agents in the web UI: marked on the fleet page; on the agent page their capabilities, health and
remote config status, and buttons only for the commands they can carry out."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.server import InProcessServer
from tests.ui.conftest import csrf_of, login
from tests.webui.opamp_helpers import FULL_CAPS, Cap, HandAgent, description, health


@pytest.fixture
def srv(tmp_path: Path) -> Iterator[InProcessServer]:
    server = InProcessServer(tmp_path / "data", ui=True)
    yield server
    server.close()


def agent_id(srv: InProcessServer, agent: HandAgent) -> str:
    found = srv.store.opamp_agent(agent.instance_id)
    assert found is not None
    return found.agent_id


def buttons(html: str) -> set[str]:
    """The collector command buttons on a page (not other actions such as approving a re-registration)."""
    return set(re.findall(r'data-action="([\w-]+)"', html)) & {"start", "stop", "restart", "shutdown"}


def test_capabilities_instead_of_buttons_that_cannot_work(srv: InProcessServer) -> None:
    restartable = HandAgent(srv.client, srv.enroll_token)
    restartable.send(agent_description=description("opamp-full", {"env": "prod"}))
    restartable.send(health=health(False, "exporter otlphttp: connection refused"))
    minimal = HandAgent(
        srv.client,
        srv.enroll_token,
        capabilities=Cap.AgentCapabilities_ReportsStatus | Cap.AgentCapabilities_AcceptsRemoteConfig,
    )
    minimal.send(agent_description=description("opamp-min", {"env": "prod"}))
    # an HTTP agent for comparison: every button
    http = srv.client.post(
        "/api/agent/v1/agents",
        json={"instance_id": "http-agent-1", "hostname": "http-host", "labels": {}},
        headers=srv.auth(srv.enroll_token),
    )
    assert http.status_code == 200

    ui = srv.app.test_client()
    login(ui, srv.create_token("operator"))
    fleet = ui.get("/").text
    assert fleet.count('data-protocol="opamp"') == 2  # the two OpAMP agents are marked, not the HTTP one

    full = ui.get(f"/agents/{agent_id(srv, restartable)}").text
    assert buttons(full) == {"restart"}
    assert 'data-capability="AcceptsRestartCommand"' in full
    assert set(re.findall(r'data-unavailable="(\w+)"', full)) == {"start", "stop", "shutdown"}
    assert "unhealthy" in full and "connection refused" in full
    assert FULL_CAPS & Cap.AgentCapabilities_AcceptsOpAMPConnectionSettings and "its own token" in full

    bare = ui.get(f"/agents/{agent_id(srv, minimal)}").text
    assert buttons(bare) == set()
    assert set(re.findall(r'data-unavailable="(\w+)"', bare)) == {"start", "stop", "restart", "shutdown"}
    assert "no AcceptsRestartCommand" in bare and "enroll token that registered it" in bare

    every = {"start", "stop", "restart", "shutdown"}
    assert buttons(ui.get(f"/agents/{http.json['agent_id']}").text) == every

    # posting a command the agent cannot carry out (a stale page, a crafted form) queues nothing
    page = ui.get(f"/agents/{agent_id(srv, minimal)}")
    r = ui.post(
        f"/agents/{agent_id(srv, minimal)}/restart",
        data={"csrf_token": csrf_of(page.text), "confirm": "yes"},
    )
    assert r.status_code == 302
    commands = srv.client.get(
        f"/api/v1/agents/{agent_id(srv, minimal)}/commands", headers=srv.auth(srv.admin_token)
    ).json["items"]
    assert commands == []
