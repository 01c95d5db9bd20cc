"""Collector builds: published once per version (immutable), served to agents by version.

The bytes live in the database (BLOB / BYTEA), not in DATA_DIR: replicas on PostgreSQL share no data
directory, and a build is tens of MB, published rarely.
"""

from __future__ import annotations

import hashlib
from typing import Any

from schemas.api import CollectorBuild, CollectorBuildList
from schemas.signing import Untrusted, peek_collector
from webui.store.base import StoreBase, dt_req, record_audit
from webui.store.errors import Conflict, Invalid, NotFound

_COLUMNS = "version, sha256, size, statement, published_at, published_by"


class CollectorsMixin(StoreBase):
    def publish_collector(
        self, version: str, data: bytes, statement: str | None, *, actor: str, role: str
    ) -> tuple[CollectorBuild, bool]:
        """Store a build; (view, created). The same version again with the same bytes only updates the
        statement (e.g. signed later); other bytes are a 409: a version names one binary forever."""
        digest = hashlib.sha256(data).hexdigest()
        if statement is not None:
            try:
                st = peek_collector(statement)
            except Untrusted as exc:
                raise Invalid(exc.reason) from exc
            if (st.version, st.sha256, st.size) != (version, digest, len(data)):
                raise Invalid(
                    "the statement is about another version, sha256 or size",
                    details={"statement": [st.version, st.sha256, st.size], "upload": [version, digest]},
                )
        now = self.clock()
        with self.db.write() as conn:
            row = conn.execute("SELECT sha256 FROM collector_builds WHERE version = ?", (version,)).fetchone()
            if row is not None and row[0] != digest:
                raise Conflict(
                    f"collector {version} is already published with other bytes",
                    code="collector_exists",
                    details={"version": version, "sha256": row[0]},
                )
            if row is None:
                conn.execute(
                    "INSERT INTO collector_builds (version, sha256, size, statement, data, published_at,"
                    " published_by) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (version, digest, len(data), statement, data, now, actor),
                )
            elif statement is not None:
                conn.execute(
                    "UPDATE collector_builds SET statement = ? WHERE version = ?", (statement, version)
                )
            record_audit(conn, now, actor, role, "collector_publish", version, None)
        return self.get_collector(version), row is None

    def get_collector(self, version: str) -> CollectorBuild:
        row = (
            self.db.conn()
            .execute(f"SELECT {_COLUMNS} FROM collector_builds WHERE version = ?", (version,))
            .fetchone()
        )
        if row is None:
            raise _missing(version)
        return _view(row)

    def list_collectors(self) -> CollectorBuildList:
        rows = (
            self.db.conn()
            .execute(f"SELECT {_COLUMNS} FROM collector_builds ORDER BY published_at DESC, version")
            .fetchall()
        )
        return CollectorBuildList(items=[_view(r) for r in rows])

    def collector_bytes(self, version: str) -> tuple[CollectorBuild, bytes]:
        row = (
            self.db.conn()
            .execute(f"SELECT {_COLUMNS}, data FROM collector_builds WHERE version = ?", (version,))
            .fetchone()
        )
        if row is None:
            raise _missing(version)
        return _view(row), bytes(row["data"])


def _view(r: Any) -> CollectorBuild:  # sqlite3.Row or the PostgreSQL row: both index by column name
    return CollectorBuild(
        version=r["version"],
        sha256=r["sha256"],
        size=int(r["size"]),
        signed=r["statement"] is not None,
        statement=r["statement"],
        published_at=dt_req(r["published_at"]),
        published_by=r["published_by"],
    )


def _missing(version: str) -> NotFound:
    return NotFound(f"no collector build {version!r}", code="no_collector", details={"version": version})
