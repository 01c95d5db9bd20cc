"""The agent's standing with the server over HTTP: who it is (agent id, token), what it has (the ETag),
how often to call (the server's poll interval) and when to call next (backoff, Retry-After).

No threads, no sleeps: the loop asks `due()` and the session says when; the clock and the HTTP client are
injected (agent/factory.py builds the real ones), so this runs in a test without a port.
"""

from __future__ import annotations

import logging
from typing import Protocol

from agent.backoff import Backoff
from agent.client import FetchedConfig, ServerRefused, ServerUnavailable
from agent.clock import Clock
from agent.state import StateDir
from schemas.api import AgentRegistration, RegistrationResponse, StatusReport, StatusResponse

log = logging.getLogger("ctrltower.agent")

MAX_RETRY_AFTER_S = 600.0  # honour the server, within reason


class ServerApi(Protocol):
    """The part of agent.client.AgentClient the session uses (a test passes a fake)."""

    def register(self, enroll_token: str, registration: AgentRegistration) -> RegistrationResponse: ...

    def fetch_config(self, agent_id: str, token: str, etag: str | None) -> FetchedConfig | None: ...

    def post_status(self, agent_id: str, token: str, report: StatusReport) -> StatusResponse: ...


class Session:
    def __init__(self, client: ServerApi, state: StateDir, backoff: Backoff, clock: Clock) -> None:
        self.client = client
        self.state = state
        self.backoff = backoff
        self.clock = clock
        self.agent_id: str | None = None
        self.token: str | None = None
        self.server_poll_interval: float | None = None
        received = state.last_received()
        good = state.last_good()
        self.etag: str | None = received.hash if received else (good.hash if good else None)
        self.no_group = False
        self.next_server_at = 0.0

    def due(self) -> bool:
        return self.clock.monotonic() >= self.next_server_at

    @property
    def registered(self) -> bool:
        return self.agent_id is not None and self.token is not None

    def credentials(self) -> tuple[str, str]:
        assert self.agent_id is not None and self.token is not None
        return self.agent_id, self.token

    # --- the calls ------------------------------------------------------------------------------------

    def register(self, enroll_token: str, registration: AgentRegistration) -> None:
        response = self.client.register(enroll_token, registration)
        self.agent_id, self.token = response.agent_id, response.agent_token
        self.state.save_agent_token(response.agent_id, response.agent_token)
        self.server_poll_interval = response.poll_interval_s
        log.info("registered as agent %s", self.agent_id)

    def fetch(self) -> FetchedConfig | None:
        """The config if it changed since the ETag; None when unchanged or when the server has none for
        this agent (no group matches its labels, or the group has no revision yet)."""
        agent_id, token = self.credentials()
        try:
            fetched = self.client.fetch_config(agent_id, token, self.etag)
        except ServerRefused as exc:
            if exc.code == "no_group":
                if not self.no_group:
                    log.info("no group matches this agent's labels; polling on")
                self.no_group = True
                return None
            if exc.code == "no_revision":
                return None
            raise
        self.no_group = False
        return fetched

    def post(self, report: StatusReport) -> StatusResponse:
        agent_id, token = self.credentials()
        response = self.client.post_status(agent_id, token, report)
        if response.poll_interval_s > 0:
            self.server_poll_interval = response.poll_interval_s
        return response

    # --- scheduling -----------------------------------------------------------------------------------

    def retry_later(self, exc: ServerUnavailable) -> None:
        backoff = self.backoff.next_delay()
        delay = min(exc.retry_after, MAX_RETRY_AFTER_S) if exc.retry_after is not None else backoff
        log.warning("server unavailable (%s); retrying in %.1fs", exc, delay)
        self.next_server_at = self.clock.monotonic() + delay

    def refused(self, exc: ServerRefused) -> None:
        """A 4xx: a lost registration is dropped (registered again next call, backed off); anything
        else (bad enroll token, bad labels) is retried, slowly."""
        auth_lost = exc.code in ("unauthorized", "not_found") or exc.status == 401
        if auth_lost and self.agent_id is not None:
            log.info("re-registering: %s", exc)
            self.agent_id = self.token = None
            # soon, but backed off: a server that keeps refusing new tokens must not see a hot loop
            self.next_server_at = self.clock.monotonic() + self.backoff.next_delay()
            return
        delay = self.backoff.next_delay()
        log.error("server refused: %s; retrying in %.1fs", exc, delay)
        self.next_server_at = self.clock.monotonic() + delay

    def succeeded(self, poll_interval: float) -> None:
        self.backoff.reset()
        self.next_server_at = self.clock.monotonic() + poll_interval
