"""API tokens: created with a role, stored as sha256 hashes, compared in constant time, revocable."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from schemas.api import LabelScope, Role, TokenCreated, TokenView
from webui.store.base import StoreBase, dt, dt_req, dumps, loads, record_audit
from webui.store.db import Conn
from webui.store.errors import NotFound

TOKEN_PREFIX = "ctt_"


def hash_secret(secret: str) -> str:
    """What the store keeps of a token: sha256 hex. A header's lone surrogate hashes, never raises."""
    return hashlib.sha256(secret.encode("utf-8", "replace")).hexdigest()


def same_hash(a: str, b: str) -> bool:
    """Constant-time comparison of two hex digests."""
    return hmac.compare_digest(a.encode("ascii", "replace"), b.encode("ascii", "replace"))


@dataclass(frozen=True)
class TokenRecord:
    id: int
    name: str
    role: str
    label_scope: LabelScope | None = None


class TokensMixin(StoreBase):
    def create_token(
        self,
        role: Role,
        name: str = "",
        *,
        actor: str = "",
        actor_role: str = "",
        secret: str | None = None,
        labels: LabelScope | None = None,
    ) -> TokenCreated:
        """Create a token (a new random secret, or `secret` when re-importing a bootstrap token file).

        `labels`: an enroll token's label scope (ValueError for any other role)."""
        if labels is not None and role != "enroll":
            raise ValueError("only enroll tokens have a label scope")
        with self.db.write() as conn:
            return self._insert_token(
                conn, role, name, actor=actor, actor_role=actor_role, secret=secret, labels=labels
            )

    def _insert_token(
        self,
        conn: Conn,
        role: Role,
        name: str,
        *,
        actor: str,
        actor_role: str,
        secret: str | None,
        labels: LabelScope | None = None,
    ) -> TokenCreated:
        secret = secret or TOKEN_PREFIX + secrets.token_urlsafe(32)
        now = self.clock()
        scope = None if labels is None else dumps(labels)
        token_id = int(
            conn.execute(
                "INSERT INTO tokens (name, role, hash, created_at, label_scope) VALUES (?, ?, ?, ?, ?)"
                " RETURNING id",
                (name, role, hash_secret(secret), now, scope),
            ).fetchone()[0]
        )
        record_audit(
            conn,
            now,
            actor or "local",
            actor_role or "admin",
            "token.create",
            str(token_id),
            {"role": role, "name": name, **({"labels": labels} if labels is not None else {})},
        )
        view = TokenView(id=token_id, name=name, role=role, created_at=dt_req(now), labels=labels)
        return TokenCreated(token=view, secret=secret)

    def list_tokens(self, *, include_revoked: bool = True) -> list[TokenView]:
        sql = "SELECT * FROM tokens"
        if not include_revoked:
            sql += " WHERE revoked_at IS NULL"
        rows = self.db.conn().execute(sql + " ORDER BY id").fetchall()
        return [
            TokenView(
                id=r["id"],
                name=r["name"],
                role=r["role"],
                created_at=dt_req(r["created_at"]),
                revoked_at=dt(r["revoked_at"]),
                labels=loads(r["label_scope"]),
            )
            for r in rows
        ]

    def revoke_token(self, token_id: int, *, actor: str = "", actor_role: str = "") -> TokenView:
        if not 0 <= token_id < 2**63:
            raise NotFound(f"no token {token_id}", details={"token_id": token_id})
        now = self.clock()
        with self.db.write() as conn:
            row = conn.execute("SELECT * FROM tokens WHERE id = ?", (token_id,)).fetchone()
            if row is None:
                raise NotFound(f"no token {token_id}", details={"token_id": token_id})
            if row["revoked_at"] is None:
                conn.execute("UPDATE tokens SET revoked_at = ? WHERE id = ?", (now, token_id))
                record_audit(
                    conn, now, actor or "local", actor_role or "admin", "token.revoke", str(token_id), None
                )
            revoked = row["revoked_at"] if row["revoked_at"] is not None else now
        return TokenView(
            id=row["id"],
            name=row["name"],
            role=row["role"],
            created_at=dt_req(row["created_at"]),
            revoked_at=dt_req(revoked),
            labels=loads(row["label_scope"]),
        )

    def find_token(self, secret: str) -> TokenRecord | None:
        """The live token with this secret, or None (unknown or revoked)."""
        digest = hash_secret(secret)
        row = (
            self.db.conn()
            .execute(
                "SELECT id, name, role, hash, label_scope FROM tokens WHERE hash = ? AND revoked_at IS NULL",
                (digest,),
            )
            .fetchone()
        )
        if row is None or not same_hash(str(row["hash"]), digest):
            return None
        return TokenRecord(int(row["id"]), str(row["name"]), str(row["role"]), loads(row["label_scope"]))

    def ensure_bootstrap_tokens(self, existing: dict[str, str] | None = None) -> dict[str, str]:
        """On an empty token table: create one admin and one enroll token; return their secrets.

        `existing` (role -> secret, from the token files of a previous database) re-imports those secrets,
        so deleting state.db does not change the tokens agents and operators already hold.
        """
        existing = existing or {}
        out: dict[str, str] = {}
        with self.db.write() as conn:
            # Replicas starting at the same moment: exactly one of them creates the bootstrap tokens.
            self.db.lock(conn, "bootstrap-tokens")
            if int(conn.execute("SELECT COUNT(*) FROM tokens").fetchone()[0]):
                return {}
            for role in ("admin", "enroll"):
                prior = existing.get(role)
                valid = prior if prior and 16 <= len(prior) <= 512 and prior.isprintable() else None
                created = self._insert_token(
                    conn, role, f"bootstrap {role}", actor="server", actor_role="", secret=valid
                )
                out[role] = created.secret
        return out

    def shared_secret(self, name: str) -> str:
        """A random secret created once for the whole database (first caller wins), the same for every
        replica: the UI's session key in scale-out mode, where replicas share no data dir."""
        with self.db.write() as conn:
            conn.execute(
                "INSERT INTO server_secrets (name, value, created_at) VALUES (?, ?, ?)"
                " ON CONFLICT (name) DO NOTHING",
                (name, secrets.token_hex(32), self.clock()),
            )
            return str(conn.execute("SELECT value FROM server_secrets WHERE name = ?", (name,)).fetchone()[0])
