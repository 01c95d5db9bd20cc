"""The loop's pieces wired by the factory, with a stepped clock and the server answered in-process.

The server here is httpx.MockTransport (in-process, no port) because the point is the agent's own
sequencing against a clock the test controls; the real server is in test_e2e.py. The collector binary
does not exist, so nothing is started: this runs without a port or a subprocess.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
from prometheus_client import CollectorRegistry

from agent.clock import Clock
from agent.factory import build_parts
from agent.runner import Agent
from agent.settings import AgentSettings


class Ticks:
    def __init__(self) -> None:
        self.t = 500.0

    def __call__(self) -> float:
        return self.t


def nowhere(tmp_path: Path) -> AgentSettings:
    """Settings whose server does not resolve and whose collector binary does not exist: the parts get an
    in-process transport and nothing is ever started (the telemetry port is never bound)."""
    return AgentSettings(
        server="http://ctrltower.invalid",
        enroll_token="enroll",
        collector=tmp_path / "no-such-otelcol",
        config_path=tmp_path / "c.yaml",
        state_dir=tmp_path / "state",
        telemetry_port=1,
    )


def test_the_injected_clock_schedules_the_server_and_times_the_report(tmp_path: Path) -> None:
    answers = [
        httpx.Response(
            503, headers={"Retry-After": "3"}, json={"error": {"code": "busy", "message": "later"}}
        ),
        httpx.Response(201, json={"agent_id": "a1", "agent_token": "cta_t", "poll_interval_s": 9.0}),
        httpx.Response(404, json={"error": {"code": "no_group", "message": "none"}}),
        httpx.Response(
            200,
            json={
                "commands": [{"id": 4, "action": "stop", "issued_at": "2026-01-01T00:00:00Z"}],
                "poll_interval_s": 11,
            },
        ),
    ]
    seen: list[tuple[str, str, dict[str, object]]] = []

    def server(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content) if request.content else {}
        seen.append((request.method, request.url.path, body))
        return answers.pop(0)

    ticks = Ticks()
    settings = nowhere(tmp_path)
    clock = Clock(monotonic=ticks, wall=lambda: 1_700_000_000.0, sleep=lambda s: None)
    parts = build_parts(settings, transport=httpx.MockTransport(server), clock=clock)
    agent = Agent(settings, CollectorRegistry(), parts=parts)
    try:
        assert agent.collector_version == "unknown"  # no binary: asked, not run
        agent.server_cycle()
        assert agent.next_server_at == ticks.t + 3.0 and agent.agent_id is None  # Retry-After, exactly
        ticks.t += 3.0
        agent.tick()  # due now: registers, polls (no group), reports, takes the stop
        assert [s[:2] for s in seen[1:]] == [
            ("POST", "/api/agent/v1/agents"),
            ("GET", "/api/agent/v1/agents/a1/config"),
            ("POST", "/api/agent/v1/agents/a1/status"),
        ]
        report = seen[-1][2]
        assert report["uptime_s"] == 3.0 and report["collector_state"] == "stopped"
        assert agent.operator_stopped and agent.state.operator_stopped()
        assert [a.id for a in agent.commands.pending_acks] == [4]  # acked on the next report
        assert agent.next_server_at == ticks.t + 11.0  # the status answer's interval
        assert agent.metrics.last_poll._value.get() == 1_700_000_000.0  # type: ignore[attr-defined]
    finally:
        agent.close()


def test_the_opamp_agent_and_the_trust_checks_read_the_same_clock(tmp_path: Path) -> None:
    from agent.client import FetchedConfig
    from agent.opamp_agent import OpampAgent

    settings = nowhere(tmp_path)
    ticks = Ticks()
    clock = Clock(monotonic=ticks, wall=lambda: 1_700_000_000.0, sleep=lambda s: None)
    unreachable = httpx.MockTransport(lambda request: httpx.Response(503))
    parts = build_parts(settings, transport=unreachable, clock=clock)
    agent = OpampAgent(settings, CollectorRegistry(), transport=unreachable, parts=parts)
    try:
        assert agent.health().status_time_unix_nano == 1_700_000_000 * 10**9
        agent.server_cycle()  # 503: backed off from the injected monotonic clock
        assert ticks.t < agent.next_server_at <= ticks.t + settings.backoff_initial_s
        agent.trust.keys = {"0" * 16: None}  # type: ignore[dict-item]  # any key: an unsigned config is refused
        agent.receive(FetchedConfig(b"x", "ab" * 32, None, None))
        assert agent.last_apply is not None and agent.last_apply.result == "untrusted"
        assert agent.last_apply.at.timestamp() == 1_700_000_000.0
    finally:
        agent.close()
