"""Operator commands to agents (start, stop, restart, shutdown): queued, delivered, acknowledged.

An OpAMP agent can only restart, and only with the AcceptsRestartCommand capability: other commands
are refused with 409 `unsupported_command` instead of being queued for an agent that cannot run them.
"""

from __future__ import annotations

from schemas.api import Action, CommandView
from webui.store.base import StoreBase, dt, dt_req, dumps, record_audit
from webui.store.errors import Conflict
from webui.store.opamp import opamp_refusal


class CommandsMixin(StoreBase):
    def queue_command(self, agent_id: str, action: Action, *, actor: str, role: str) -> CommandView:
        """Queue `action` for the agent (delivered with its next status answer) and audit it."""
        now = self.clock()
        with self.db.write() as conn:
            self._require_agent(conn, agent_id)
            refusal = opamp_refusal(conn, agent_id, action)
            if refusal is not None:  # an OpAMP agent that cannot do it: say so now, queue nothing
                raise Conflict(refusal, code="unsupported_command", details={"action": action})
            command_id = int(
                conn.execute(
                    "INSERT INTO commands (agent_id, action, state, issued_by, issued_at)"
                    " VALUES (?, ?, 'queued', ?, ?) RETURNING id",
                    (agent_id, action, actor, now),
                ).fetchone()[0]
            )
            conn.execute(
                "INSERT INTO agent_events (agent_id, at, kind, detail) VALUES (?, ?, 'command', ?)",
                (agent_id, now, dumps({"command_id": command_id, "action": action, "by": actor})),
            )
            record_audit(conn, now, actor, role, f"command.{action}", agent_id, {"command_id": command_id})
        return CommandView(
            id=command_id,
            agent_id=agent_id,
            action=action,
            state="queued",
            issued_by=actor,
            issued_at=dt_req(now),
        )

    def list_commands(self, agent_id: str, *, limit: int = 50) -> list[CommandView]:
        with self.db.read() as conn:
            self._require_agent(conn, agent_id)
            rows = conn.execute(
                "SELECT * FROM commands WHERE agent_id = ? ORDER BY id DESC LIMIT ?", (agent_id, limit)
            ).fetchall()
        return [
            CommandView(
                id=r["id"],
                agent_id=r["agent_id"],
                action=r["action"],
                state=r["state"],
                issued_by=r["issued_by"],
                issued_at=dt_req(r["issued_at"]),
                acked_at=dt(r["acked_at"]),
                error=r["error"],
            )
            for r in rows
        ]
