"""Agents per group and sync status, kept up to date in the transactions that change them.

The fleet page shows how many agents are in each status. Computing that by evaluating every agent's
sync status on each page view costs O(agents) (100,000 agents: several hundred ms). Instead the table
`agent_sync_counts (group_name, sync_status, n)` is changed in the same write transaction as the agent
row: registration, a status report, a deletion (each moves one agent from one cell to another), and a
publish (which changes every agent's desired config, so it rebuilds the table with one GROUP BY).
Migration 4 fills it for an existing database; `rebuild_status_counts()` does the same on demand.

The run status (online / degraded / offline) depends on the clock and on the metrics process, not on a
write, so it is not stored: offline agents are counted through the `last_seen` index and degraded ones
from the (short) list of failing scrapes.

Portable SQL only (no triggers, no SQLite-only functions): `INSERT ... ON CONFLICT ... DO UPDATE` and
`COALESCE` work the same in SQLite and PostgreSQL. A NULL group is stored as '' (a primary key column).
"""

from __future__ import annotations

from typing import Any

from webui.store.base import StoreBase
from webui.store.db import Conn
from webui.store.sync_sql import CELL_OF_AGENT, REBUILD_SQL

Cell = tuple[str, str]  # (group or '', sync status)


def rebuild_counts(conn: Conn) -> None:
    """Recount every agent inside the caller's write transaction (a publish, migration 4)."""
    for statement in REBUILD_SQL:
        conn.execute(statement)


class StatusCountsMixin(StoreBase):
    @staticmethod
    def _sync_cell(conn: Conn, agent_id: str) -> Cell | None:
        """The (group, sync status) cell an agent counts in now, inside the caller's transaction."""
        row = conn.execute(CELL_OF_AGENT, (agent_id,)).fetchone()
        return None if row is None else (str(row[0]), str(row[1]))

    @staticmethod
    def _move_count(conn: Conn, before: Cell | None, after: Cell | None) -> None:
        """Move one agent between cells (None: it did not exist before / does not exist after)."""
        if before == after:
            return
        if before is not None:
            conn.execute(
                "UPDATE agent_sync_counts SET n = n - 1 WHERE group_name = ? AND sync_status = ?", before
            )
        if after is not None:
            conn.execute(
                "INSERT INTO agent_sync_counts (group_name, sync_status, n) VALUES (?, ?, 1)"
                " ON CONFLICT (group_name, sync_status) DO UPDATE SET n = agent_sync_counts.n + 1",
                after,
            )

    def rebuild_status_counts(self) -> None:
        """Recount every agent (for a database whose agents were written around the store)."""
        with self.db.write() as conn:
            rebuild_counts(conn)

    def stored_sync_counts(self, group: str | None = None) -> dict[str, int]:
        """Agents per sync status (of one group, or of all), from the maintained table."""
        sql = "SELECT sync_status, SUM(n) FROM agent_sync_counts"
        args: tuple[Any, ...] = ()
        if group is not None:
            sql, args = sql + " WHERE group_name = ?", (group,)
        rows = self.db.conn().execute(sql + " GROUP BY sync_status", args).fetchall()
        return {str(r[0]): int(r[1]) for r in rows if int(r[1])}

    @staticmethod
    def _fleet_counts(
        conn: Conn, cutoff: float, failing: list[str], group: str | None = None
    ) -> dict[str, int]:
        """Counts per run status and per sync status over the whole fleet (or one group's agents),
        without evaluating every agent."""
        in_group, args = ("", ()) if group is None else (" AND group_name = ?", (group,))
        counts: dict[str, int] = {"online": 0, "degraded": 0, "offline": 0}
        total = 0
        for r in conn.execute(
            "SELECT sync_status, SUM(n) FROM agent_sync_counts WHERE n > 0"
            + in_group
            + " GROUP BY sync_status",
            args,
        ):
            if int(r[1]):
                counts[str(r[0])] = int(r[1])
                total += int(r[1])
        offline = int(
            conn.execute(
                "SELECT COUNT(*) FROM agents WHERE (last_seen IS NULL OR last_seen < ?)" + in_group,
                (cutoff, *args),
            ).fetchone()[0]
        )
        # OpAMP agents reporting themselves unhealthy are degraded too (webui/store/opamp.py)
        unhealthy = conn.execute("SELECT agent_id FROM opamp_agents WHERE healthy = 0").fetchall()
        failing = sorted({*failing, *(str(r[0]) for r in unhealthy)})
        degraded = 0
        for start in range(0, len(failing), 500):  # bounded parameter lists, portable (no json_each)
            chunk = failing[start : start + 500]
            degraded += int(
                conn.execute(
                    f"SELECT COUNT(*) FROM agents WHERE id IN ({', '.join('?' * len(chunk))})"
                    " AND last_seen >= ?" + in_group,
                    (*chunk, cutoff, *args),
                ).fetchone()[0]
            )
        counts.update(offline=offline, degraded=degraded, online=total - offline - degraded)
        return counts
