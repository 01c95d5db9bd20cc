"""The agent's loop: register, poll, apply, supervise, watch for drift, report status, run commands.

One thread does everything in short ticks, so supervision never waits on the server: the server's
calls are scheduled (poll interval, backoff, Retry-After) rather than slept on.
"""

from __future__ import annotations

import logging
import platform
import socket
import threading
from collections.abc import Mapping
from importlib import metadata
from random import Random
from typing import TypedDict, Unpack
from urllib.parse import urlsplit

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from prometheus_client import CollectorRegistry

from agent.apply import Applier
from agent.backoff import Backoff
from agent.client import FetchedConfig, ServerRefused, ServerUnavailable
from agent.clock import SYSTEM_CLOCK, Clock
from agent.collector_metrics import CollectorPage, process_usage
from agent.commands import Commands
from agent.drift import DriftWatch
from agent.factory import AgentParts, build_parts
from agent.metrics import AgentMetrics, MetricsServer
from agent.receive import Receiver
from agent.session import Session
from agent.settings import AgentSettings
from agent.state import StoredConfig
from agent.supervision import Supervision
from agent.trust import TrustGate
from schemas.api import (
    AgentRegistration,
    ApplyResult,
    CollectorState,
    Command,
    CommandAck,
    DriftEvent,
    StatusReport,
)
from schemas.errors import Permanent

log = logging.getLogger("ctrltower.agent")


def _agent_version() -> str:
    try:
        return metadata.version("ctrltower")
    except metadata.PackageNotFoundError:  # running from a source tree that was never installed
        return "0+unknown"


AGENT_VERSION = _agent_version()
TICK_S = 0.1
SAMPLE_EVERY_S = 1.0
DRIFT_SETTLE_S = 0.05


def outgoing_address(server_url: str) -> str | None:
    """The local IP address of the route to the server (no packet is sent: UDP connect only)."""
    parsed = urlsplit(server_url)
    try:
        infos = socket.getaddrinfo(parsed.hostname or "127.0.0.1", parsed.port or 80, type=socket.SOCK_DGRAM)
        family, _, _, _, address = infos[0]
        with socket.socket(family, socket.SOCK_DGRAM) as s:
            s.connect(address)
            return str(s.getsockname()[0])
    except (OSError, IndexError):
        return None


class AgentOptions(TypedDict, total=False):
    """What an agent may be built with besides its settings (the OpAMP agent takes the same)."""

    transport: httpx.BaseTransport | None
    rng: Random | None
    trust_keys: Mapping[str, Ed25519PublicKey] | None
    clock: Clock | None
    parts: AgentParts | None


class Agent:
    def __init__(
        self, settings: AgentSettings, registry: CollectorRegistry, **options: Unpack[AgentOptions]
    ) -> None:
        """`parts` holds the side effects (agent/factory.py); without, the real ones are built from
        `settings`, `transport`, `trust_keys` and `clock`."""
        trust_keys = options.get("trust_keys")
        parts = options.get("parts")
        if parts is None:
            parts = build_parts(
                settings,
                transport=options.get("transport"),
                trust_keys=trust_keys,
                clock=options.get("clock") or SYSTEM_CLOCK,
            )
        self.settings = settings
        self.parts = parts
        self.clock = parts.clock
        # key id -> public key (--trust-key); none: configs are not verified (as before signing)
        self.trust = TrustGate(trust_keys or {}, settings.labels, clock=self.clock.wall)
        self.state = parts.state
        self.instance_id = self.state.instance_id()
        self.metrics = AgentMetrics(registry)
        self.rng = options.get("rng") or Random()
        self.telemetry_port = parts.telemetry_port
        self.client = parts.client
        self.upgrades = parts.upgrades
        self.collector = parts.collector
        self.scraper = parts.scraper
        self.applier = Applier(
            self.collector,
            self.scraper,
            health_timeout_s=settings.health_timeout_s,
            health_settle_s=settings.health_settle_s,
            on_page=self._observe_page,
        )
        self.server_backoff = Backoff(settings.backoff_initial_s, settings.backoff_max_s, rng=self.rng)
        self.restart_backoff = Backoff(
            settings.restart_backoff_initial_s, settings.restart_backoff_max_s, rng=self.rng
        )
        self.metrics_server: MetricsServer | None = None
        # the server's side: registration, token, ETag, when to call next
        self.session = Session(self.client, self.state, self.server_backoff, self.clock)
        # what the agent knows: the config it runs, the one it refused, the last apply result
        self.receiver = Receiver(
            trust=self.trust,
            state=self.state,
            session=self.session,
            applier=self.applier,
            upgrades=self.upgrades,
            metrics=self.metrics,
            clock=self.clock,
            operator_stopped=lambda: self.operator_stopped,
            on_applied=self.restart_backoff.reset,
            on_change=self._update_info,
        )
        self.drift = DriftWatch(self.applier, settings.config_path, self.clock)
        self.commands = Commands(
            self.collector,
            self.applier,
            self.state,
            settings.stop_timeout_s,
            desired=lambda: self.desired,
            restore=self._restore_desired,  # bound now: the OpAMP agent's override included
            mark_restored=self._mark_restored,
        )
        self.started = self.clock.monotonic()
        self.next_drift_at = 0.0
        self.next_sample_at = 0.0
        self.supervision = Supervision(
            self.collector, self.restart_backoff, self.clock, on_exit=self.metrics.restarts.inc
        )

    # The session's fields, as the trust checks, the OpAMP agent and the tests have always read them.
    @property
    def agent_id(self) -> str | None:
        return self.session.agent_id

    @agent_id.setter
    def agent_id(self, value: str | None) -> None:
        self.session.agent_id = value

    @property
    def token(self) -> str | None:
        return self.session.token

    @token.setter
    def token(self, value: str | None) -> None:
        self.session.token = value

    @property
    def etag(self) -> str | None:
        return self.session.etag

    @etag.setter
    def etag(self, value: str | None) -> None:
        self.session.etag = value

    @property
    def server_poll_interval(self) -> float | None:
        return self.session.server_poll_interval

    @server_poll_interval.setter
    def server_poll_interval(self, value: float | None) -> None:
        self.session.server_poll_interval = value

    @property
    def next_server_at(self) -> float:
        return self.session.next_server_at

    @next_server_at.setter
    def next_server_at(self, value: float) -> None:
        self.session.next_server_at = value

    # The receiver's fields, likewise.
    @property
    def desired(self) -> StoredConfig | None:
        return self.receiver.desired

    @desired.setter
    def desired(self, value: StoredConfig | None) -> None:
        self.receiver.desired = value

    @property
    def failed_hash(self) -> str | None:
        return self.receiver.failed_hash

    @failed_hash.setter
    def failed_hash(self, value: str | None) -> None:
        self.receiver.failed_hash = value

    @property
    def last_apply(self) -> ApplyResult | None:
        return self.receiver.last_apply

    @last_apply.setter
    def last_apply(self, value: ApplyResult | None) -> None:
        self.receiver.last_apply = value

    @property
    def pending_drift(self) -> list[DriftEvent]:
        return self.drift.pending

    @pending_drift.setter
    def pending_drift(self, value: list[DriftEvent]) -> None:
        self.drift.pending = value

    @property
    def operator_stopped(self) -> bool:
        return self.commands.operator_stopped

    @property
    def shutdown_requested(self) -> bool:
        return self.commands.shutdown_requested

    @property
    def collector_version(self) -> str:
        """The build running now (a downloaded upgrade or the --collector binary)."""
        return self.upgrades.current.version

    # --- timing ------------------------------------------------------------------------------------

    @property
    def poll_interval(self) -> float:
        if self.settings.poll_interval_s is not None:
            return self.settings.poll_interval_s
        return self.server_poll_interval or self.settings.default_poll_interval_s

    def should_run(self) -> bool:
        return self.desired is not None and not self.operator_stopped

    def collector_state(self) -> CollectorState:
        if self.collector.alive():
            started = self.collector.started_at or 0.0
            up = self.clock.monotonic() - started
            return "running" if up >= self.settings.health_settle_s else "starting"
        return "crashed" if self.should_run() else "stopped"

    # --- the loop ------------------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Run until `stop` is set or a `shutdown` command arrives; always stops the collector."""
        if self.settings.metrics_port is not None:
            where = f"{self.settings.metrics_host}:{self.settings.metrics_port}"
            try:
                self.metrics_server = MetricsServer(
                    self.metrics.registry, self.settings.metrics_host, self.settings.metrics_port
                )
            except OSError as exc:
                self.close()
                raise Permanent(f"cannot serve /metrics on {where}: {exc.strerror or exc}") from exc
            log.info("agent metrics on %s", self.metrics_server.url)
        try:
            self._boot()
            while not stop.is_set() and not self.shutdown_requested:
                self.tick()
                stop.wait(TICK_S)
        finally:
            self.close()

    def close(self) -> None:
        self.collector.stop(self.settings.stop_timeout_s)
        self.metrics.up.set(0)
        if self.metrics_server is not None:
            self.metrics_server.close()
            self.metrics_server = None
        self.parts.close()

    def _boot(self) -> None:
        """Run the last good config before talking to the server: telemetry first."""
        self._update_info()
        if self.trust.enabled:
            log.info("verifying configs against trusted key(s) %s", ", ".join(sorted(self.trust.keys)))
        else:
            log.warning(
                "no --trust-key: configs are NOT verified: whoever controls the server runs this collector"
            )
        if self.desired is None:
            log.info("no config yet: waiting for the server")
            return
        # edited while the agent was down: that is drift too (a missing file at boot is not)
        restored = self._restore_desired(missing_is_drift=False)
        if self.should_run() and self._start_collector() is None and restored:
            self._mark_restored()

    def tick(self) -> None:
        now = self.clock.monotonic()
        self._supervise(now)
        if now >= self.next_sample_at:
            self.sample()
            self.next_sample_at = now + SAMPLE_EVERY_S
        if now >= self.next_drift_at:
            self.check_drift()
            self.next_drift_at = self.clock.monotonic() + self.poll_interval
        if self.clock.monotonic() >= self.next_server_at:
            self.server_cycle()

    # --- supervision ----------------------------------------------------------------------------------

    def _start_collector(self) -> str | None:
        return self.supervision.start()

    def _supervise(self, now: float) -> None:
        if self.supervision.due(now) and self.should_run():
            restored = self._restore_desired()
            if self._start_collector() is None and restored:
                self._mark_restored()

    def sample(self) -> None:
        pid = self.collector.pid
        self.metrics.up.set(1 if pid is not None else 0)
        self.metrics.observe_process(pid, process_usage(pid) if pid is not None else None)
        if pid is not None:
            self.applier.sample()
        self.collector.trim_log()

    def _observe_page(self, page: CollectorPage) -> None:
        self.metrics.observe_items(page.instance_id, dict(page.items))

    def _update_info(self) -> None:
        desired = self.desired
        self.metrics.set_info(
            AGENT_VERSION,
            self.upgrades.current.version,
            self.instance_id,
            (desired.group if desired else None) or "",
            (desired.revision if desired else None) or "",
        )

    # --- drift ----------------------------------------------------------------------------------------

    def _restore_desired(self, missing_is_drift: bool = True) -> bool:
        """Put the desired config back at PATH if it differs, recording drift; True if it did."""
        return self.drift.restore(self.desired, missing_is_drift)

    def _mark_restored(self) -> None:
        """The desired config is back in force: say so, so the server sees the drift resolved."""
        self.receiver.mark_restored()

    def check_drift(self) -> None:
        if not self._restore_desired():
            return
        problem = self.applier.run() if self.should_run() else None
        if problem is not None:
            log.error("collector unhealthy after restoring the desired config: %s", problem)
            return
        self._mark_restored()

    # --- server ---------------------------------------------------------------------------------------

    def server_cycle(self) -> None:
        session = self.session
        try:
            if not session.registered:
                session.register(self.settings.enroll_token, self.registration())
            fetched = session.fetch()
            if fetched is not None:
                self.receive(fetched)
            self.report()
        except ServerUnavailable as exc:
            session.retry_later(exc)
            return
        except ServerRefused as exc:
            session.refused(exc)
            return
        self.metrics.last_poll.set(self.clock.wall())
        session.succeeded(self.poll_interval)

    def advertised_metrics_url(self) -> str | None:
        """Where the server can scrape this agent: --metrics-url, else the listen address, with a
        wildcard host (0.0.0.0, ::) replaced by the local address this host uses to reach the server."""
        if self.settings.metrics_url:
            return self.settings.metrics_url
        server = self.metrics_server
        if server is None:
            return None
        host = server.host
        if host in ("", "0.0.0.0", "::"):
            host = outgoing_address(self.settings.server) or socket.gethostname()
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{server.port}/metrics"

    def registration(self) -> AgentRegistration:
        """What the agent registers with (raises pydantic's ValidationError for bad labels/hostname)."""
        settings = self.settings
        return AgentRegistration(
            instance_id=self.instance_id,
            hostname=settings.hostname or socket.gethostname(),
            platform=f"{platform.system().lower()}/{platform.machine()}",
            agent_version=AGENT_VERSION,
            collector_version=self.upgrades.current.version,
            labels=settings.labels,
            metrics_url=self.advertised_metrics_url(),
            # proof that this is the agent registered with this instance_id (the server refuses a
            # re-registration without it: anyone with the enroll token could take the record over)
            agent_token=kept[1] if (kept := self.state.agent_token()) else None,
        )

    def receive(self, fetched: FetchedConfig) -> None:
        """Check, upgrade for and apply a config the server sent (agent/receive.py)."""
        self.receiver.receive(fetched)

    def status_report(self) -> StatusReport:
        desired = self.desired
        return StatusReport(
            collector_state=self.collector_state(),
            collector_pid=self.collector.pid,
            effective_config_hash=desired.hash if desired else None,
            effective_revision=desired.revision if desired else None,
            last_apply=self.last_apply,
            drift_events=list(self.pending_drift),
            acks=list(self.commands.pending_acks),
            uptime_s=self.clock.monotonic() - self.started,
            stopped_by_operator=self.operator_stopped,
            verifies_signatures=self.trust.enabled,
            collector_version=self.upgrades.current.version,
        )

    def report(self) -> None:
        report = self.status_report()
        response = self.session.post(report)
        # delivered: drop what was reported
        self.drift.delivered(len(report.drift_events))
        self.commands.delivered(len(report.acks))
        self.commands.take(response.commands)
        if self.shutdown_requested:  # deliver the shutdown's ack before leaving
            self.session.post(self.status_report())
            self.commands.pending_acks = []

    # --- commands -------------------------------------------------------------------------------------

    def execute(self, command: Command) -> CommandAck:
        return self.commands.execute(command)
