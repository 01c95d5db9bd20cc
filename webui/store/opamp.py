"""OpAMP agents: the per-agent protocol state (table opamp_agents) beside the common agent record.

An OpAMP agent is an ordinary row of `agents` (registered by `register_agent`, reporting through
`report_status`, so groups, sync status, events, commands and the UI treat it like any agent); this
mixin keeps what only OpAMP needs: capabilities, sequence number, health, remote config status, the
effective config baseline, and which enroll token an agent that cannot take its own token uses.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from schemas.api import Action, AgentRegistration, AgentView, LabelScope, OpampStatus, RegistrationResponse
from schemas.opamp import AgentCap, capability_names, has
from webui.opamp.protocol import OpampState
from webui.store.base import StoreBase, dumps
from webui.store.db import Conn
from webui.store.groups import resolve_group


@dataclass(frozen=True)
class OpampAgent:
    agent_id: str
    token_hash: str
    group: str | None
    enroll_token_id: int | None  # set: the agent authenticates with this enroll token (see docs/opamp.md)
    state: OpampState


# uint64 sequence numbers do not fit SQLite's signed INTEGER: kept as decimal text.
_STATE_COLUMNS = (
    "capabilities",
    "sequence_num",
    "healthy",
    "health_status",
    "health_error",
    "started_at",
    "remote_status",
    "remote_hash",
    "remote_error",
    "applied_hash",
    "effective_hash",
    "baseline_hash",
    "baseline_for",
    "drifted",
    "offered_hash",
    "want_full_state",
    "delivered",
    "disconnected",
)


def _state_of(row: Any) -> OpampState:
    return OpampState(
        capabilities=int(row["capabilities"]),
        sequence_num=None if row["sequence_num"] is None else int(row["sequence_num"]),
        healthy=None if row["healthy"] is None else bool(row["healthy"]),
        health_status=row["health_status"],
        health_error=row["health_error"],
        started_at=row["started_at"],
        remote_status=row["remote_status"],
        remote_hash=row["remote_hash"],
        remote_error=row["remote_error"],
        applied_hash=row["applied_hash"],
        effective_hash=row["effective_hash"],
        baseline_hash=row["baseline_hash"],
        baseline_for=row["baseline_for"],
        drifted=bool(row["drifted"]),
        offered_hash=row["offered_hash"],
        want_full_state=bool(row["want_full_state"]),
        delivered=tuple(json.loads(row["delivered"])),
        disconnected=bool(row["disconnected"]),
    )


def _values_of(state: OpampState) -> tuple[Any, ...]:
    return (
        state.capabilities,
        None if state.sequence_num is None else str(state.sequence_num),
        None if state.healthy is None else int(state.healthy),
        state.health_status,
        state.health_error,
        state.started_at,
        state.remote_status,
        state.remote_hash,
        state.remote_error,
        state.applied_hash,
        state.effective_hash,
        state.baseline_hash,
        state.baseline_for,
        int(state.drifted),
        state.offered_hash,
        int(state.want_full_state),
        json.dumps(list(state.delivered)),
        int(state.disconnected),
    )


def commands_of(capabilities: int) -> list[Action]:
    """The operator commands an OpAMP agent can carry out: restart, if it accepts the restart command."""
    return ["restart"] if has(capabilities, AgentCap.AgentCapabilities_AcceptsRestartCommand) else []


def with_opamp(conn: Conn, views: list[AgentView]) -> list[AgentView]:
    """The views with protocol and OpAMP status filled in for the OpAMP agents among them."""
    if not views:
        return views
    found: dict[str, OpampStatus] = {}
    ids = [v.id for v in views]
    for start in range(0, len(ids), 500):  # bounded parameter lists, portable SQL
        chunk = ids[start : start + 500]
        rows = conn.execute(
            f"SELECT * FROM opamp_agents WHERE agent_id IN ({', '.join('?' * len(chunk))})", chunk
        ).fetchall()
        for row in rows:
            state = _state_of(row)
            found[str(row["agent_id"])] = OpampStatus(
                capabilities=capability_names(state.capabilities),
                commands=commands_of(state.capabilities),
                healthy=state.healthy,
                health_status=state.health_status,
                health_error=state.health_error,
                remote_config_status=state.remote_status,
                remote_config_error=state.remote_error,
                own_token=row["enroll_token_id"] is None,
            )
    return [
        v.model_copy(update={"protocol": "opamp", "opamp": found[v.id]}) if v.id in found else v
        for v in views
    ]


def opamp_refusal(conn: Conn, agent_id: str, action: str) -> str | None:
    """Why an OpAMP agent cannot carry out `action` (None: it can, or it is not an OpAMP agent)."""
    row = conn.execute("SELECT capabilities FROM opamp_agents WHERE agent_id = ?", (agent_id,)).fetchone()
    if row is None or action in commands_of(int(row[0])):
        return None
    if action == "restart":
        return "this OpAMP agent does not accept restart commands (no AcceptsRestartCommand capability)"
    return f"OpAMP has no {action} command: only restart can be sent to an OpAMP agent"


class OpampMixin(StoreBase):
    if TYPE_CHECKING:  # AgentsMixin's and StatusCountsMixin's, beside this mixin in Store

        def register_agent(
            self, reg: AgentRegistration, *, scope: LabelScope | None = None
        ) -> RegistrationResponse: ...

        @staticmethod
        def _sync_cell(conn: Conn, agent_id: str) -> tuple[str, str] | None: ...

        @staticmethod
        def _move_count(
            conn: Conn, before: tuple[str, str] | None, after: tuple[str, str] | None
        ) -> None: ...

    def opamp_agent(self, instance_id: str) -> OpampAgent | None:
        """The agent registered with this instance_id (any protocol), with its OpAMP state if any."""
        row = (
            self.db.conn()
            .execute(
                "SELECT a.id AS agent_id, a.token_hash, a.group_name, o.*"
                " FROM agents a LEFT JOIN opamp_agents o ON o.agent_id = a.id WHERE a.instance_id = ?",
                (instance_id,),
            )
            .fetchone()
        )
        if row is None:
            return None
        has_state = row["capabilities"] is not None
        return OpampAgent(
            agent_id=str(row["agent_id"]),
            token_hash=str(row["token_hash"]),
            group=row["group_name"],
            enroll_token_id=row["enroll_token_id"] if has_state else None,
            state=_state_of(row) if has_state else OpampState(),
        )

    def opamp_register(
        self,
        reg: AgentRegistration,
        *,
        capabilities: int,
        enroll_token_id: int | None,
        scope: LabelScope | None = None,
    ) -> RegistrationResponse:
        """Register (or re-register) through `register_agent`, the one registration path, then mark the
        agent as OpAMP. The OpAMP state starts over: the agent is told to report its full state."""
        response = self.register_agent(reg, scope=scope)
        with self.db.write() as conn:
            self._save(conn, response.agent_id, OpampState(capabilities=capabilities), enroll_token_id)
        return response

    def opamp_describe(self, agent_id: str, reg: AgentRegistration) -> None:
        """Apply a changed agent_description: hostname, versions, platform and labels (and so the group)."""
        with self.db.write() as conn:
            row = conn.execute(
                "SELECT hostname, platform, agent_version, collector_version, labels, group_name"
                " FROM agents WHERE id = ?",
                (agent_id,),
            ).fetchone()
            if row is None:
                return
            labels = dumps(reg.labels)
            new = (reg.hostname, reg.platform, reg.agent_version, reg.collector_version, labels)
            if tuple(row)[:5] == new:
                return
            group = resolve_group(reg.labels, self.current_selectors(conn))
            before = self._sync_cell(conn, agent_id)  # the fleet counts move with the group
            conn.execute(
                "UPDATE agents SET hostname=?, platform=?, agent_version=?, collector_version=?, labels=?,"
                " group_name=? WHERE id=?",
                (*new, group, agent_id),
            )
            self._move_count(conn, before, self._sync_cell(conn, agent_id))
            if group != row["group_name"]:
                self._bump(conn, agents=True)  # cached group of this agent is stale

    def opamp_save(self, agent_id: str, state: OpampState, *, disconnected: bool = False) -> None:
        with self.db.write() as conn:
            row = conn.execute(
                "SELECT enroll_token_id FROM opamp_agents WHERE agent_id = ?", (agent_id,)
            ).fetchone()
            self._save(conn, agent_id, state, None if row is None else row[0])
            if disconnected:  # the agent said goodbye: offline now, not after three poll intervals
                conn.execute("UPDATE agents SET last_seen = NULL WHERE id = ?", (agent_id,))

    def opamp_fail_commands(self, agent_id: str, ids: list[int], error: str) -> None:
        """Commands an OpAMP agent cannot carry out (no such OpAMP command, or not among its
        capabilities) fail at once, with the reason, instead of waiting forever."""
        now = self.clock()
        with self.db.write() as conn:
            for command_id in ids:
                cur = conn.execute(
                    "UPDATE commands SET state = 'failed', acked_at = ?, error = ?"
                    " WHERE id = ? AND agent_id = ? AND state IN ('queued', 'delivered')",
                    (now, error, command_id, agent_id),
                )
                if cur.rowcount:
                    conn.execute(
                        "INSERT INTO agent_events (agent_id, at, kind, detail)"
                        " VALUES (?, ?, 'command_ack', ?)",
                        (
                            agent_id,
                            now,
                            dumps({"command_id": command_id, "result": "failed", "error": error}),
                        ),
                    )

    @staticmethod
    def _save(conn: Conn, agent_id: str, state: OpampState, enroll_token_id: int | None) -> None:
        columns = ", ".join(_STATE_COLUMNS)
        marks = ", ".join("?" for _ in _STATE_COLUMNS)
        updates = ", ".join(f"{c} = excluded.{c}" for c in (*_STATE_COLUMNS, "enroll_token_id"))
        conn.execute(
            f"INSERT INTO opamp_agents (agent_id, enroll_token_id, {columns}) VALUES (?, ?, {marks})"
            f" ON CONFLICT (agent_id) DO UPDATE SET {updates}",
            (agent_id, enroll_token_id, *_values_of(state)),
        )
