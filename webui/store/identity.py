"""Who may claim an agent record, and UI sessions a logout revokes (issue 10).

- An instance_id already registered is taken over only by its own agent (its current token as
  `agent_token`) or after an operator approved one re-registration; anyone else with an enroll token
  gets 409 `instance_registered` and the record and its token stay as they were.
- The label scope of the enroll token an agent registered with is kept with the agent, so a later
  label change (an OpAMP agent_description) is held to the same scope.
- UI sessions: the cookie carries a random session id; the row (its sha256) is what makes it valid,
  so logging out (or the token's revocation) ends it server-side, whatever copy of the cookie exists.
"""

from __future__ import annotations

import hashlib
import secrets
from typing import Any

from schemas.api import AgentRegistration, LabelScope
from webui.store.base import StoreBase, loads, record_audit
from webui.store.errors import Conflict, NotFound
from webui.store.tokens import hash_secret, same_hash

REREGISTER_APPROVAL_S = 3600.0  # an operator's approval of one re-registration without proof lasts this


def check_takeover(row: Any, reg: AgentRegistration, now: float) -> None:
    """Raise 409 `instance_registered` unless this registration may take over the agent in `row`
    (columns id, token_hash, reregister_until)."""
    token = reg.agent_token
    proven = token is not None and same_hash(hash_secret(token), str(row["token_hash"]))
    approved = row["reregister_until"] is not None and float(row["reregister_until"]) >= now
    if not (proven or approved):
        raise Conflict(
            f"instance_id {reg.instance_id!r} is registered as agent {row['id']}: re-registering it "
            "needs that agent's current token (agent_token) or an operator's approval "
            f"(POST /api/v1/agents/{row['id']}/approve-reregistration)",
            code="instance_registered",
            details={"agent_id": str(row["id"]), "instance_id": reg.instance_id},
        )


def _session_hash(session_id: str) -> str:
    return hashlib.sha256(session_id.encode("utf-8", "replace")).hexdigest()


class IdentityMixin(StoreBase):
    def approve_reregistration(
        self, agent_id: str, *, actor: str, role: str, valid_s: float = REREGISTER_APPROVAL_S
    ) -> float:
        """Let the next registration of this agent's instance_id within `valid_s` go without its token
        (a host reinstalled with its instance id but not its state dir). Audited. Returns the deadline."""
        now = self.clock()
        until = now + valid_s
        with self.db.write() as conn:
            cur = conn.execute("UPDATE agents SET reregister_until = ? WHERE id = ?", (until, agent_id))
            if not cur.rowcount:
                raise NotFound(f"no agent {agent_id!r}", details={"agent_id": agent_id})
            record_audit(conn, now, actor, role, "agent.approve_reregistration", agent_id, {"until": until})
        return until

    def agent_label_scope(self, agent_id: str) -> LabelScope | None:
        """The label scope of the enroll token this agent registered with (None: unscoped)."""
        row = self.db.conn().execute("SELECT label_scope FROM agents WHERE id = ?", (agent_id,)).fetchone()
        return None if row is None else loads(row["label_scope"])

    # --- UI sessions ----------------------------------------------------------------------------------

    def create_session(self, token_id: int, ttl_s: float) -> str:
        """A new session for this token; returns its id (the cookie's). Expired rows go on the way."""
        session_id = secrets.token_urlsafe(32)
        now = self.clock()
        with self.db.write() as conn:
            conn.execute("DELETE FROM ui_sessions WHERE expires_at < ?", (now,))
            conn.execute(
                "INSERT INTO ui_sessions (id_hash, token_id, created_at, expires_at) VALUES (?, ?, ?, ?)",
                (_session_hash(session_id), token_id, now, now + ttl_s),
            )
        return session_id

    def session_token_id(self, session_id: str) -> int | None:
        """The token id of a live session (None: unknown, logged out or expired)."""
        if not session_id or len(session_id) > 128:
            return None
        row = (
            self.db.conn()
            .execute(
                "SELECT token_id, expires_at FROM ui_sessions WHERE id_hash = ?", (_session_hash(session_id),)
            )
            .fetchone()
        )
        if row is None or float(row["expires_at"]) < self.clock():
            return None
        return int(row["token_id"])

    def end_session(self, session_id: str) -> None:
        with self.db.write() as conn:
            conn.execute("DELETE FROM ui_sessions WHERE id_hash = ?", (_session_hash(session_id),))
