"""Read-only access to the server's SQLite state: scrape targets and revision-apply annotations.

The server owns `DATA_DIR/state.db` and its schema (webui/store/db.py); this module only reads
`agents(id, metrics_url, last_seen, group_name)` and `agent_events(agent_id, at, kind, revision)`.
A missing database or table (server not migrated yet) reads as empty.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path

from schemas.errors import RetryLater


class StateReadError(RetryLater):
    pass


@dataclass(frozen=True, slots=True)
class ScrapeTarget:
    agent_id: str
    url: str
    group: str | None


@dataclass(frozen=True, slots=True)
class Annotation:
    agent_id: str
    at: float
    revision: str | None


def annotations_query(
    start: float, end: float, *, agent: str | None, group: str | None, limit: int, placeholder: str
) -> tuple[str, tuple[object, ...]]:
    """The SQL (SQLite `?` or psycopg `%s` placeholders) reading revision applies for chart markers."""
    p = placeholder
    sql = "SELECT e.agent_id, e.at, e.revision FROM agent_events e "
    args: list[object] = []
    if group is not None:
        sql += f"JOIN agents a ON a.id = e.agent_id AND a.group_name = {p} "
        args.append(group)
    sql += f"WHERE e.kind = 'applied' AND e.at >= {p} AND e.at < {p} "
    args += [start, end]
    if agent is not None:
        sql += f"AND e.agent_id = {p} "
        args.append(agent)
    sql += f"ORDER BY e.at LIMIT {p}"
    args.append(limit)
    return sql, tuple(args)


def to_annotations(rows: list[tuple[object, ...]]) -> list[Annotation]:
    return [Annotation(str(r[0]), float(r[1]), None if r[2] is None else str(r[2])) for r in rows]  # type: ignore[arg-type]


class StateReader:
    def __init__(self, path: Path) -> None:
        self.path = path

    def _connect(self) -> sqlite3.Connection | None:
        if not self.path.exists():
            return None
        conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=5.0)
        conn.execute("PRAGMA query_only = ON")
        return conn

    def _rows(self, sql: str, args: tuple[object, ...]) -> list[tuple[object, ...]]:
        try:
            conn = self._connect()
            if conn is None:
                return []
            try:
                return list(conn.execute(sql, args).fetchall())
            finally:
                conn.close()
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                return []
            raise StateReadError(f"reading {self.path}: {exc}") from exc
        except sqlite3.Error as exc:
            raise StateReadError(f"reading {self.path}: {exc}") from exc

    def targets(self, now: float, online_within_s: float) -> list[ScrapeTarget]:
        """Agents with a metrics URL that reported within `online_within_s`."""
        rows = self._rows(
            "SELECT id, metrics_url, group_name FROM agents "
            "WHERE metrics_url IS NOT NULL AND metrics_url != '' AND last_seen >= ? ORDER BY id",
            (now - online_within_s,),
        )
        return [ScrapeTarget(str(r[0]), str(r[1]), None if r[2] is None else str(r[2])) for r in rows]

    def annotations(
        self,
        start: float,
        end: float,
        *,
        agent: str | None = None,
        group: str | None = None,
        limit: int = 500,
    ) -> list[Annotation]:
        """Revision applies in [start, end) of one agent, of a group's current agents, or of all."""
        sql, args = annotations_query(start, end, agent=agent, group=group, limit=limit, placeholder="?")
        return to_annotations(self._rows(sql, args))
