"""Shared pieces of the store: the base class holding the database and clock, time and JSON helpers."""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from schemas.api import Page
from webui.store.db import Conn, StateDB
from webui.store.errors import NotFound
from webui.store.groups import GroupSelector

Clock = Callable[[], float]
# Returns the ids of agents whose metrics scrapes are failing (the metrics process knows).
ScrapeHealth = Callable[[], Collection[str]]


def record_audit(
    conn: Conn,
    at: float,
    actor: str,
    role: str,
    action: str,
    target: str | None,
    detail: dict[str, Any] | None = None,
) -> None:
    """Append one audit row (who did what to which target, when) in the caller's transaction, so an
    action and its audit entry commit or roll back together. The one writer of the audit table."""
    conn.execute(
        "INSERT INTO audit (at, actor, role, action, target, detail) VALUES (?, ?, ?, ?, ?, ?)",
        (at, actor, role, action, target, None if detail is None else dumps(detail)),
    )


def page_rows(
    conn: Conn,
    source: str,
    where: str,
    args: Sequence[Any] | Mapping[str, Any],
    order: str,
    *,
    limit: int,
    offset: int,
    columns: str = "*",
    total: int | None = None,
) -> tuple[list[Any], Page]:
    """One page of `SELECT columns FROM source where ORDER BY order` and its `Page` (the total matching
    rows, limit, offset). The paging of every offset-paged list.

    `source` is what follows FROM: a table, a join or a view's subquery. `where` is "" or " WHERE ...";
    `args` fills it, positionally (`?`, a sequence) or by name (`:name`, a mapping). A caller that knows
    the total more cheaply (maintained counts) passes it, and no COUNT(*) runs.
    """
    if total is None:
        total = int(conn.execute(f"SELECT COUNT(*) FROM {source}{where}", args).fetchone()[0])
    params: Sequence[Any] | Mapping[str, Any]
    if isinstance(args, Mapping):
        clause, params = (
            "LIMIT :page_limit OFFSET :page_offset",
            {**args, "page_limit": limit, "page_offset": offset},
        )
    else:
        clause = "LIMIT ? OFFSET ?"
        params = [*args, limit, offset]
    rows = conn.execute(f"SELECT {columns} FROM {source}{where} ORDER BY {order} {clause}", params).fetchall()
    return rows, Page(total=total, limit=limit, offset=offset)


class StoreBase:
    def __init__(
        self,
        db: StateDB,
        *,
        clock: Clock,
        poll_interval_s: float,
        offline_after_s: float,
        scrape_failing: ScrapeHealth | None = None,
    ) -> None:
        self.db = db
        self.clock = clock
        self.poll_interval_s = poll_interval_s
        self.offline_after_s = offline_after_s
        self.scrape_failing = scrape_failing

    def _failing_agents(self) -> list[str]:
        if self.scrape_failing is None:
            return []
        try:
            return sorted(self.scrape_failing())
        except Exception:  # metrics process down: show online/offline only, never fail the page
            return []

    @staticmethod
    def _require_agent(conn: Conn, agent_id: str) -> None:
        """Raise NotFound (a 404 with the JSON error body) unless the agent exists."""
        if conn.execute("SELECT 1 FROM agents WHERE id = ?", (agent_id,)).fetchone() is None:
            raise NotFound(f"no agent {agent_id!r}", details={"agent_id": agent_id})

    def _bump(self, conn: Conn, *, config: bool = False, agents: bool = False) -> None:
        conn.execute(
            "UPDATE meta SET config_gen = config_gen + ?, agents_gen = agents_gen + ? WHERE id = 1",
            (int(config), int(agents)),
        )
        self.db.notify_change(conn)  # PostgreSQL: every replica's config cache hears of it at commit

    @staticmethod
    def _current_sha(conn: Conn) -> str | None:
        row = conn.execute("SELECT commit_sha FROM publications ORDER BY seq DESC LIMIT 1").fetchone()
        return None if row is None else str(row[0])

    def current_revision(self) -> str | None:
        return self._current_sha(self.db.conn())

    def current_selectors(self, conn: Conn) -> list[GroupSelector]:
        sha = self._current_sha(conn)
        if sha is None:
            return []
        rows = conn.execute(
            "SELECT name, selector, priority FROM revision_groups WHERE commit_sha = ?", (sha,)
        ).fetchall()
        return [GroupSelector(r["name"], json.loads(r["selector"]), int(r["priority"])) for r in rows]

    def watch_changes(self, on_change: Callable[[tuple[int, int]], None], *, fallback_s: float) -> bool:
        """Push the change counters to `on_change` when they move (PostgreSQL LISTEN/NOTIFY), so the
        config cache needs no database read per poll. False on SQLite: read `counters()` instead."""
        listen = getattr(self.db, "listen", None)
        if listen is None:
            return False
        listen(lambda: on_change(self.counters()), fallback_s=fallback_s)
        return True

    def counters(self) -> tuple[int, int]:
        """(config_gen, agents_gen): the cheap check that keeps per-worker caches honest."""
        row = self.db.conn().execute("SELECT config_gen, agents_gen FROM meta WHERE id = 1").fetchone()
        return int(row[0]), int(row[1])


def ts(value: datetime | None) -> float | None:
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.timestamp()


def dt(value: float | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value, UTC)


def dt_req(value: float) -> datetime:
    return datetime.fromtimestamp(value, UTC)


def dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def loads(value: str | None) -> Any:
    return None if value is None else json.loads(value)
