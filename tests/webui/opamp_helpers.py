"""Hand-built OpAMP messages for the /v1/opamp tests: an agent that says exactly what a test wants."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from schemas.opamp import CONTENT_TYPE, OPAMP_PATH, key_value, opamp_pb2

Cap = opamp_pb2.AgentCapabilities
FULL_CAPS = (
    Cap.AgentCapabilities_ReportsStatus
    | Cap.AgentCapabilities_AcceptsRemoteConfig
    | Cap.AgentCapabilities_ReportsRemoteConfig
    | Cap.AgentCapabilities_ReportsEffectiveConfig
    | Cap.AgentCapabilities_ReportsHealth
    | Cap.AgentCapabilities_AcceptsRestartCommand
    | Cap.AgentCapabilities_AcceptsOpAMPConnectionSettings
)


def description(host: str, labels: dict[str, str]) -> opamp_pb2.AgentDescription:
    return opamp_pb2.AgentDescription(
        identifying_attributes=[
            key_value("service.name", "io.opentelemetry.collector"),
            key_value("service.version", "0.135.0"),
        ],
        non_identifying_attributes=[
            key_value("host.name", host),
            key_value("os.type", "linux"),
            key_value("host.arch", "amd64"),
            *(key_value(k, v) for k, v in labels.items()),
        ],
    )


@dataclass
class HandAgent:
    """One OpAMP agent driven by hand: builds AgentToServer, posts it, parses ServerToAgent."""

    client: Any  # a Flask test client
    enroll_token: str
    capabilities: int = FULL_CAPS
    uid: bytes = field(default_factory=lambda: uuid.uuid4().bytes)
    seq: int = 0
    token: str | None = None
    last_status: int = 0
    clock: Any = None  # a tests.webui.conftest.Clock: advanced a second per message (events need order)

    @property
    def instance_id(self) -> str:
        return str(uuid.UUID(bytes=self.uid))

    def message(self, **fields: Any) -> opamp_pb2.AgentToServer:
        msg = opamp_pb2.AgentToServer(
            instance_uid=self.uid, sequence_num=self.seq, capabilities=self.capabilities, **fields
        )
        self.seq += 1
        return msg

    def post_raw(self, body: bytes, token: str | None, content_type: str = CONTENT_TYPE) -> Any:
        headers = {"Content-Type": content_type}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return self.client.post(OPAMP_PATH, data=body, headers=headers)

    def send(self, token: str | None = None, **fields: Any) -> opamp_pb2.ServerToAgent:
        """Send one message (with our own token once we have one) and take the token if offered."""
        if self.clock is not None:
            self.clock.advance(1.0)
        r = self.post_raw(
            self.message(**fields).SerializeToString(), token or self.token or self.enroll_token
        )
        self.last_status = r.status_code
        assert r.mimetype == CONTENT_TYPE, r.data[:200]
        answer = opamp_pb2.ServerToAgent()
        answer.ParseFromString(r.data)
        for header in answer.connection_settings.opamp.headers.headers:
            if header.key == "Authorization":
                self.token = header.value.removeprefix("Bearer ")
        return answer

    def status(self, hash_hex: str, state: int, error: str = "") -> opamp_pb2.RemoteConfigStatus:
        return opamp_pb2.RemoteConfigStatus(
            last_remote_config_hash=bytes.fromhex(hash_hex), status=state, error_message=error
        )


def effective(body: bytes) -> opamp_pb2.EffectiveConfig:
    config = opamp_pb2.EffectiveConfig()
    entry = config.config_map.config_map[""]
    entry.body = body
    entry.content_type = "text/yaml"
    return config


def health(healthy: bool, error: str = "") -> opamp_pb2.ComponentHealth:
    return opamp_pb2.ComponentHealth(
        healthy=healthy, start_time_unix_nano=1_799_999_000 * 10**9, last_error=error
    )


APPLIED = opamp_pb2.RemoteConfigStatuses_APPLIED
APPLYING = opamp_pb2.RemoteConfigStatuses_APPLYING
FAILED = opamp_pb2.RemoteConfigStatuses_FAILED
FULL_STATE = opamp_pb2.ServerToAgentFlags_ReportFullState
