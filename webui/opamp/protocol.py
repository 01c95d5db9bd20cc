"""The OpAMP server's decisions, pure: what an AgentToServer message means and what to answer.

No Flask, no database, no clock of its own: `observe` turns one message and the agent's stored
`OpampState` into the next state plus what the rest of the server records (an apply result, drift,
the collector's state), and `answer` builds the ServerToAgent. webui/opamp/endpoint.py does the I/O.

How OpAMP maps onto ctrltower's sync status (docs/opamp.md):
- `remote_config_status` APPLIED / FAILED for a hash is an apply result (applied / failed) for that hash,
  recorded once per change; APPLYING is shown as the collector `starting`.
- The agent runs the hash it last reported APPLIED (the `reported_hash` of the fleet list). An agent that
  never reports remote config status runs our config when its effective config is byte for byte it.
- Drift: the first effective config an agent reports after applying hash H is its baseline (a supervisor
  may merge its own extensions into what it reports, so it need not equal our bytes); a later effective
  config that differs from the baseline while H is still applied is drift, and returning to the baseline
  resolves it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from schemas.api import ApplyResult, CollectorState, DriftEvent
from schemas.opamp import (
    CONFIG_CONTENT_TYPE,
    CONFIG_KEY,
    AgentCap,
    has,
    hash_bytes,
    opamp_pb2,
)

_STATUS_NAMES = {
    opamp_pb2.RemoteConfigStatuses_UNSET: "UNSET",
    opamp_pb2.RemoteConfigStatuses_APPLIED: "APPLIED",
    opamp_pb2.RemoteConfigStatuses_APPLYING: "APPLYING",
    opamp_pb2.RemoteConfigStatuses_FAILED: "FAILED",
}
SERVER_CAPABILITIES = (
    opamp_pb2.ServerCapabilities_AcceptsStatus
    | opamp_pb2.ServerCapabilities_OffersRemoteConfig
    | opamp_pb2.ServerCapabilities_AcceptsEffectiveConfig
    | opamp_pb2.ServerCapabilities_OffersConnectionSettings
)
MAX_ERROR_CHARS = 8000  # ApplyResult.error's limit


@dataclass(frozen=True)
class OpampState:
    """What the server keeps per OpAMP agent between messages (table opamp_agents)."""

    capabilities: int = 0
    sequence_num: int | None = None
    healthy: bool | None = None
    health_status: str | None = None
    health_error: str | None = None
    started_at: float | None = None  # unix seconds, from health.start_time_unix_nano
    remote_status: str | None = None  # APPLIED | APPLYING | FAILED | UNSET
    remote_hash: str | None = None  # hex
    remote_error: str | None = None
    applied_hash: str | None = None  # the hash last reported APPLIED (what the agent runs)
    effective_hash: str | None = None
    baseline_hash: str | None = None
    baseline_for: str | None = None  # the applied hash the baseline belongs to
    drifted: bool = False
    offered_hash: str | None = None  # the remote config last sent
    want_full_state: bool = False  # ReportFullState still to be sent (a command took the answer)
    delivered: tuple[int, ...] = ()  # command ids sent in the last answer, done when the agent talks again
    disconnected: bool = False


@dataclass(frozen=True)
class Desired:
    """The config the agent's group should run (None fields: no group or nothing published)."""

    config_hash: str
    revision: str
    body: bytes


@dataclass(frozen=True)
class Observed:
    """What one message changes outside the OpAMP state: fed to the store's status report."""

    state: OpampState
    collector_state: CollectorState
    reported_hash: str | None
    last_apply: ApplyResult | None
    drift: list[DriftEvent] = field(default_factory=list)
    uptime_s: float = 0.0
    gap: bool = False  # the sequence number skipped: ask for full state


def effective_digest(config: opamp_pb2.EffectiveConfig) -> str | None:
    """sha256 of the effective config: of the body itself for a single file (so it compares with our
    config hash), else of every (name, body) in name order. None when the map is empty."""
    files = config.config_map.config_map
    if not files:
        return None
    if len(files) == 1:
        return hashlib.sha256(next(iter(files.values())).body).hexdigest()
    digest = hashlib.sha256()
    for name in sorted(files):
        body = files[name].body
        digest.update(f"{len(name)}:{name}:{len(body)}:".encode())
        digest.update(body)
    return digest.hexdigest()


def _at(now: float) -> datetime:
    return datetime.fromtimestamp(now, UTC)


def observe(
    prev: OpampState, msg: opamp_pb2.AgentToServer, *, now: float, desired: Desired | None
) -> Observed:
    """Fold one AgentToServer into the agent's state (see the module docstring for the rules)."""
    state = prev
    gap = prev.sequence_num is not None and msg.sequence_num != prev.sequence_num + 1
    # capabilities are in every message (a message with 0 says nothing new about them)
    state = replace(
        state,
        capabilities=msg.capabilities or prev.capabilities,
        sequence_num=msg.sequence_num,
        delivered=(),
        disconnected=msg.HasField("agent_disconnect"),
    )
    if msg.HasField("health"):
        h = msg.health
        state = replace(
            state,
            healthy=h.healthy,
            health_status=h.status[:256] or None,
            health_error=h.last_error[:MAX_ERROR_CHARS] or None,
            started_at=h.start_time_unix_nano / 1e9 if h.start_time_unix_nano else None,
        )
    last_apply: ApplyResult | None = None
    if msg.HasField("remote_config_status"):
        rcs = msg.remote_config_status
        status = _STATUS_NAMES.get(rcs.status, "UNSET")
        rhash = rcs.last_remote_config_hash.hex() or None
        error = rcs.error_message[:MAX_ERROR_CHARS] or None
        changed = (status, rhash, error) != (prev.remote_status, prev.remote_hash, prev.remote_error)
        state = replace(state, remote_status=status, remote_hash=rhash, remote_error=error)
        revision = desired.revision if desired is not None and desired.config_hash == rhash else None
        if status == "APPLIED" and rhash is not None:
            state = replace(state, applied_hash=rhash)
            if changed:
                last_apply = ApplyResult(result="applied", config_hash=rhash, revision=revision, at=_at(now))
        elif status == "FAILED" and rhash is not None and changed:
            last_apply = ApplyResult(
                result="failed",
                config_hash=rhash,
                revision=revision,
                error=error or "the agent reported FAILED without a message",
                at=_at(now),
            )
    drift: list[DriftEvent] = []
    if msg.HasField("effective_config"):
        eff = effective_digest(msg.effective_config)
        state = replace(state, effective_hash=eff)
        if (
            eff is not None
            and desired is not None
            and eff == desired.config_hash
            and state.remote_status is None
            and state.applied_hash != eff
        ):
            # an agent that does not report remote config status, running our bytes exactly
            state = replace(state, applied_hash=eff)
            last_apply = ApplyResult(
                result="applied", config_hash=eff, revision=desired.revision, at=_at(now)
            )
        applied = state.applied_hash
        if eff is not None and applied is not None:
            if state.baseline_for != applied:
                state = replace(state, baseline_hash=eff, baseline_for=applied, drifted=False)
            elif eff != state.baseline_hash and not state.drifted:
                drift.append(DriftEvent(at=_at(now), local_hash=eff, desired_hash=applied))
                state = replace(state, drifted=True)
            elif eff == state.baseline_hash and state.drifted:
                # back to what it ran after applying: the drift is over (an apply newer than the drift)
                state = replace(state, drifted=False)
                last_apply = last_apply or ApplyResult(
                    result="applied",
                    config_hash=applied,
                    revision=desired.revision if desired and desired.config_hash == applied else None,
                    at=_at(now),
                )
    collector_state: CollectorState
    if state.disconnected:
        collector_state = "stopped"
    elif state.remote_status == "APPLYING":
        collector_state = "starting"
    elif state.healthy is False:
        collector_state = "crashed"
    else:
        collector_state = "running"
    uptime = max(0.0, now - state.started_at) if state.started_at else 0.0
    return Observed(
        state=state,
        collector_state=collector_state,
        reported_hash=state.applied_hash,
        last_apply=last_apply,
        drift=drift,
        uptime_s=uptime,
        gap=gap,
    )


def should_offer_config(state: OpampState, desired: Desired | None, *, full_state: bool) -> bool:
    """Send AgentRemoteConfig when the agent can take it and does not have (or was not sent) it."""
    if desired is None or not has(state.capabilities, AgentCap.AgentCapabilities_AcceptsRemoteConfig):
        return False
    if state.offered_hash != desired.config_hash or full_state:
        return True
    # it told us it holds another config (restarted with an old one, say): send ours again
    return state.remote_hash is not None and state.remote_hash != desired.config_hash


def remote_config(desired: Desired) -> opamp_pb2.AgentRemoteConfig:
    config = opamp_pb2.AgentRemoteConfig(config_hash=hash_bytes(desired.config_hash))
    entry = config.config.config_map[CONFIG_KEY]
    entry.body = desired.body
    entry.content_type = CONFIG_CONTENT_TYPE
    return config


def token_offer(token: str, endpoint: str, heartbeat_s: float) -> opamp_pb2.ConnectionSettingsOffers:
    """The agent's own token as the OpAMP connection's Authorization header."""
    settings = opamp_pb2.OpAMPConnectionSettings(
        destination_endpoint=endpoint,
        headers=opamp_pb2.Headers(headers=[opamp_pb2.Header(key="Authorization", value=f"Bearer {token}")]),
        heartbeat_interval_seconds=max(1, round(heartbeat_s)),
    )
    offer = opamp_pb2.ConnectionSettingsOffers(opamp=settings)
    offer.hash = hashlib.sha256(settings.SerializeToString(deterministic=True)).digest()
    return offer


def error_message(
    kind: int, message: str, instance_uid: bytes = b"", retry_after_s: float | None = None
) -> opamp_pb2.ServerToAgent:
    err = opamp_pb2.ServerErrorResponse(type=kind, error_message=message)  # type: ignore[arg-type]
    if retry_after_s is not None:
        err.retry_info.retry_after_nanoseconds = int(retry_after_s * 1e9)
    return opamp_pb2.ServerToAgent(instance_uid=instance_uid, error_response=err)
