"""`ctrltower agent --protocol opamp`: the same agent, talking OpAMP (`POST /v1/opamp`) to the server.

Everything on the host side is the HTTP agent's (agent/runner.py: supervision, apply with health check,
last good config, drift restore, /metrics); only the conversation with the server differs. Each server
cycle is one AgentToServer carrying health, the remote config status (APPLIED for the config it runs,
FAILED with the collector's error for one it rejected) and the effective config (the bytes at the config
path); the agent description too on the first message and whenever the server asks for full state. The
answer may bring the config (applied as if fetched over HTTP, after checking its sha256), the agent's own
token (kept in STATE_DIR/opamp_token, 0600), ReportFullState, or a restart command.
"""

from __future__ import annotations

import logging
import platform
import socket
import uuid
from pathlib import Path
from typing import Unpack

from prometheus_client import CollectorRegistry

from agent.client import FetchedConfig, ServerRefused, ServerUnavailable
from agent.opamp_client import OpampClient
from agent.runner import AGENT_VERSION, Agent, AgentOptions
from agent.settings import AgentSettings
from fsio.atomic import atomic_write
from schemas.api import Command
from schemas.common import config_hash
from schemas.opamp import CONFIG_KEY, AgentCap, key_value, opamp_pb2

log = logging.getLogger("ctrltower.agent.opamp")

CAPABILITIES = (
    AgentCap.AgentCapabilities_ReportsStatus
    | AgentCap.AgentCapabilities_AcceptsRemoteConfig
    | AgentCap.AgentCapabilities_ReportsRemoteConfig
    | AgentCap.AgentCapabilities_ReportsEffectiveConfig
    | AgentCap.AgentCapabilities_ReportsHealth
    | AgentCap.AgentCapabilities_AcceptsRestartCommand
    | AgentCap.AgentCapabilities_AcceptsOpAMPConnectionSettings
    | AgentCap.AgentCapabilities_ReportsHeartbeat
)
TOKEN_FILE = "opamp_token"


def instance_uid(instance_id: str) -> bytes:
    """The 16-byte OpAMP instance_uid of the agent's persistent instance id (`ct-<uuid hex>`)."""
    try:
        return uuid.UUID(hex=instance_id.removeprefix("ct-")).bytes
    except ValueError:  # an instance id written by hand: a stable UUID derived from it
        return uuid.uuid5(uuid.NAMESPACE_URL, f"ctrltower:{instance_id}").bytes


def read_token(path: Path) -> str | None:
    try:
        token = path.read_text().strip()
    except FileNotFoundError:
        return None
    return token or None


def write_token(path: Path, token: str) -> None:
    """Keep the agent's token for restarts: readable by this user only, replaced atomically."""
    atomic_write(path, token.encode() + b"\n")


class OpampAgent(Agent):
    def __init__(
        self, settings: AgentSettings, registry: CollectorRegistry, **options: Unpack[AgentOptions]
    ) -> None:
        super().__init__(settings, registry, **options)
        self.opamp = OpampClient(settings.server, settings.http_timeout_s, transport=options.get("transport"))
        self.uid = instance_uid(self.instance_id)
        self.token_path = self.state.root / TOKEN_FILE
        self.own_token = read_token(self.token_path)
        self.sequence_num = 0
        self.full_state = True  # the first message describes the agent
        self.found_drift: bytes | None = None  # a local edit the agent undid, not yet told the server

    def close(self) -> None:
        super().close()
        self.opamp.close()

    # --- drift ------------------------------------------------------------------------------------

    def _restore_desired(self, missing_is_drift: bool = True) -> bool:
        """The HTTP agent's restore, remembering the bytes it found: OpAMP has no drift event, so the next
        message reports them as the effective config (the server sees the drift), the one after it the
        restored config (the server sees it resolved)."""
        found = self.applier.read_local()
        recorded = len(self.pending_drift)
        restored = super()._restore_desired(missing_is_drift)
        if len(self.pending_drift) > recorded:
            self.found_drift = found if found is not None else b""  # deleted: an empty effective config
            self.next_server_at = self.clock.monotonic()
        self.pending_drift = []  # the HTTP status report's list: not sent in this mode
        return restored

    # --- the message ------------------------------------------------------------------------------

    def description(self) -> opamp_pb2.AgentDescription:
        settings = self.settings
        extra = {"ctrltower.agent.version": AGENT_VERSION}
        metrics_url = self.advertised_metrics_url()
        if metrics_url:
            extra["ctrltower.metrics_url"] = metrics_url
        return opamp_pb2.AgentDescription(
            identifying_attributes=[
                key_value("service.name", "io.opentelemetry.collector"),
                key_value("service.version", self.collector_version or ""),
                key_value("service.instance.id", str(uuid.UUID(bytes=self.uid))),
            ],
            non_identifying_attributes=[
                key_value("host.name", settings.hostname or socket.gethostname()),
                key_value("os.type", platform.system().lower()),
                key_value("host.arch", platform.machine()),
                *(key_value(k, v) for k, v in {**extra, **settings.labels}.items()),
            ],
        )

    def health(self) -> opamp_pb2.ComponentHealth:
        state = self.collector_state()
        started = self.collector.started_at
        # stopped (no config yet) is not unhealthy; a collector that should run and does not is
        health = opamp_pb2.ComponentHealth(healthy=state != "crashed", status=state)
        if started is not None and self.collector.alive():
            health.start_time_unix_nano = int((self.clock.wall() - (self.clock.monotonic() - started)) * 1e9)
        if self.last_apply is not None and self.last_apply.result == "failed" and self.last_apply.error:
            health.last_error = self.last_apply.error[-2000:]
        health.status_time_unix_nano = int(self.clock.wall() * 1e9)
        return health

    def remote_config_status(self) -> opamp_pb2.RemoteConfigStatus | None:
        """FAILED for a config the collector rejected (until another one applies), else APPLIED for the
        one it runs; nothing before the first config."""
        if self.failed_hash is not None:
            last = self.last_apply
            error = last.error if last is not None and last.result == "failed" and last.error else None
            return opamp_pb2.RemoteConfigStatus(
                last_remote_config_hash=bytes.fromhex(self.failed_hash),
                status=opamp_pb2.RemoteConfigStatuses_FAILED,
                error_message=error or "the collector rejected this config (before the agent restarted)",
            )
        if self.desired is None:
            return None
        return opamp_pb2.RemoteConfigStatus(
            last_remote_config_hash=bytes.fromhex(self.desired.hash),
            status=opamp_pb2.RemoteConfigStatuses_APPLIED,
        )

    def message(self) -> opamp_pb2.AgentToServer:
        msg = opamp_pb2.AgentToServer(
            instance_uid=self.uid, sequence_num=self.sequence_num, capabilities=CAPABILITIES
        )
        if self.full_state:
            msg.agent_description.CopyFrom(self.description())
        msg.health.CopyFrom(self.health())
        status = self.remote_config_status()
        if status is not None:
            msg.remote_config_status.CopyFrom(status)
        local = self.applier.read_local() if self.desired is not None else None
        if self.found_drift is not None:
            local = self.found_drift
        if local is not None:
            entry = msg.effective_config.config_map.config_map[CONFIG_KEY]
            entry.body = local
            entry.content_type = "text/yaml"
        return msg

    # --- the exchange -----------------------------------------------------------------------------

    def server_cycle(self) -> None:
        message = self.message()
        self.sequence_num += 1  # every message counts, delivered or not: the server notices a loss
        try:
            answer = self.opamp.send(message, self.own_token or self.settings.enroll_token)
        except ServerUnavailable as exc:
            self.full_state = True  # whatever was lost, say everything next time
            self.session.retry_later(exc)
            return
        except ServerRefused as exc:
            if exc.status == 401 and self.own_token is not None:
                log.info("the server refused this agent's token (%s): enrolling again", exc)
                self.own_token = None
                self.token_path.unlink(missing_ok=True)
                self.full_state = True
            else:
                log.error("server refused: %s", exc)
            self.next_server_at = self.clock.monotonic() + self.server_backoff.next_delay()
            return
        self.full_state = False
        soon_after_drift = self.found_drift is not None
        self.found_drift = None  # delivered: the next message reports the restored config
        self.server_backoff.reset()
        self.metrics.last_poll.set(self.clock.wall())
        soon = self.handle(answer) or soon_after_drift
        self.next_server_at = self.clock.monotonic() + (0.0 if soon else self.poll_interval)

    def handle(self, answer: opamp_pb2.ServerToAgent) -> bool:
        """Act on one ServerToAgent; True when the server should hear back at once."""
        soon = False
        settings = answer.connection_settings.opamp
        for header in settings.headers.headers:
            if header.key.lower() == "authorization" and header.value.startswith("Bearer "):
                self.own_token = header.value.removeprefix("Bearer ").strip()
                write_token(self.token_path, self.own_token)
                log.info("registered over OpAMP as instance %s", uuid.UUID(bytes=self.uid))
        if settings.heartbeat_interval_seconds:
            self.server_poll_interval = float(settings.heartbeat_interval_seconds)
        if answer.flags & opamp_pb2.ServerToAgentFlags_ReportFullState:
            self.full_state = soon = True
        if answer.HasField("command") and answer.command.type == opamp_pb2.CommandType_Restart:
            ack = self.execute(Command(id=0, action="restart", issued_at=self.clock.now()))
            if ack.result == "failed":
                log.error("restart failed: %s", ack.error)
            soon = True
        if answer.HasField("remote_config"):
            self.take_config(answer.remote_config)
            soon = True
        return soon

    def take_config(self, remote: opamp_pb2.AgentRemoteConfig) -> None:
        files = remote.config.config_map
        if len(files) != 1:
            log.error("remote config with %d files: this agent runs exactly one; ignored", len(files))
            return
        body = next(iter(files.values())).body
        digest = config_hash(body)
        if remote.config_hash and remote.config_hash.hex() != digest:
            # What was reviewed must be what runs: bytes that do not match their hash are never applied.
            log.error("remote config body %s does not match its config_hash; ignored", digest[:12])
            return
        self.receive(FetchedConfig(data=body, hash=digest, revision=None, group=None))
