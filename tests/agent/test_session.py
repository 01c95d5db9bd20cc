"""The agent's server session with a fake server API and a hand-stepped clock: no port, no subprocess.

The fake stands in for agent.client.AgentClient (its real HTTP is tested in test_units.py and the e2e
tests); here what is checked is the session's own logic: ETag, tokens, poll interval, backoff, Retry-After.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime
from pathlib import Path

import pytest

from agent.backoff import Backoff
from agent.client import FetchedConfig, ServerRefused, ServerUnavailable
from agent.clock import Clock
from agent.session import MAX_RETRY_AFTER_S, Session
from agent.state import StateDir, StoredConfig
from schemas.api import AgentRegistration, RegistrationResponse, StatusReport, StatusResponse
from schemas.common import config_hash


class FakeServer:
    def __init__(self) -> None:
        self.calls: list[tuple[str, ...]] = []
        self.config: FetchedConfig | None = None
        self.fetch_error: Exception | None = None
        self.poll_interval_s = 7.0

    def register(self, enroll_token: str, registration: AgentRegistration) -> RegistrationResponse:
        self.calls.append(("register", enroll_token, registration.instance_id))
        return RegistrationResponse(agent_id="a1", agent_token="tok1", poll_interval_s=5.0)

    def fetch_config(self, agent_id: str, token: str, etag: str | None) -> FetchedConfig | None:
        self.calls.append(("fetch", agent_id, token, str(etag)))
        if self.fetch_error is not None:
            raise self.fetch_error
        return self.config

    def post_status(self, agent_id: str, token: str, report: StatusReport) -> StatusResponse:
        self.calls.append(("status", agent_id, token))
        return StatusResponse(commands=[], poll_interval_s=self.poll_interval_s)


class Ticks:
    """A monotonic clock that moves only when the test says so."""

    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def make(tmp_path: Path) -> tuple[Session, FakeServer, Ticks]:
    server, ticks = FakeServer(), Ticks()
    clock = Clock(monotonic=ticks, wall=lambda: 0.0, sleep=lambda s: None)
    backoff = Backoff(1.0, 8.0, rng=random.Random(1))
    return Session(server, StateDir(tmp_path / "state"), backoff, clock), server, ticks


def registration() -> AgentRegistration:
    return AgentRegistration(instance_id="ct-unit-0001", hostname="h")


def test_register_keeps_the_token_and_the_servers_interval(tmp_path: Path) -> None:
    session, server, _ = make(tmp_path)
    assert not session.registered and session.due()
    session.register("enroll", registration())
    assert session.registered and session.credentials() == ("a1", "tok1")
    assert session.server_poll_interval == 5.0
    assert StateDir(tmp_path / "state").agent_token() == ("a1", "tok1")  # survives a restart
    session.post(StatusReport(collector_state="stopped", uptime_s=0))
    assert session.server_poll_interval == 7.0  # the status answer moves it
    assert server.calls[0] == ("register", "enroll", "ct-unit-0001")


def test_fetch_sends_the_etag_of_what_the_agent_has(tmp_path: Path) -> None:
    data = b"receivers: {}\n"
    StateDir(tmp_path / "state").save_last_received(StoredConfig(data, config_hash(data), "r1", "g"))
    session, server, _ = make(tmp_path)
    assert session.etag == config_hash(data)
    session.register("enroll", registration())
    assert session.fetch() is None  # unchanged (304)
    assert server.calls[-1] == ("fetch", "a1", "tok1", config_hash(data))


@pytest.mark.parametrize("code", ["no_group", "no_revision"])
def test_nothing_to_run_is_not_an_error(tmp_path: Path, code: str) -> None:
    session, server, _ = make(tmp_path)
    session.register("enroll", registration())
    server.fetch_error = ServerRefused(404, code, "none")
    assert session.fetch() is None
    assert session.no_group is (code == "no_group")
    server.fetch_error = ServerRefused(404, "not_found", "gone")
    with pytest.raises(ServerRefused):
        session.fetch()


def test_retry_after_wins_over_backoff_within_reason(tmp_path: Path) -> None:
    session, _, ticks = make(tmp_path)
    session.retry_later(ServerUnavailable("busy", retry_after=3.0))
    assert session.next_server_at == ticks.t + 3.0 and not session.due()
    session.retry_later(ServerUnavailable("busy", retry_after=10_000.0))
    assert session.next_server_at == ticks.t + MAX_RETRY_AFTER_S
    session.retry_later(ServerUnavailable("down"))
    assert ticks.t < session.next_server_at <= ticks.t + 8.0  # the backoff, capped
    ticks.t = session.next_server_at
    assert session.due()


def test_a_lost_token_registers_again_backed_off(tmp_path: Path) -> None:
    session, _, ticks = make(tmp_path)
    session.register("enroll", registration())
    session.refused(ServerRefused(401, "unauthorized", "bad token"))
    assert not session.registered and session.agent_id is None
    assert session.next_server_at > ticks.t  # never a hot loop
    # a refused registration (no agent id yet) keeps trying, slowly
    session.refused(ServerRefused(403, "forbidden", "bad enroll token"))
    assert session.next_server_at > ticks.t


def test_success_resets_the_backoff_and_waits_one_interval(tmp_path: Path) -> None:
    session, _, ticks = make(tmp_path)
    for _ in range(5):
        session.retry_later(ServerUnavailable("down"))
    session.succeeded(poll_interval=30.0)
    assert session.next_server_at == ticks.t + 30.0
    session.retry_later(ServerUnavailable("down"))
    assert session.next_server_at <= ticks.t + 1.0  # back to the initial delay


def test_the_clock_stamps_wall_time_in_utc() -> None:
    clock = Clock(wall=lambda: 86400.0)
    assert clock.now() == datetime(1970, 1, 2, tzinfo=UTC)
