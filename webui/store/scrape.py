"""What the metrics process reads from the server's state: scrape targets and chart markers.

The metrics package may not import webui; it asks a `metrics.targets.TargetSource`, and the server
gives it one over these methods (`webui.metrics.process.StoreTargets`). One SQL text for SQLite and
PostgreSQL (the PostgreSQL backend rewrites the `?` placeholders).
"""

from __future__ import annotations

from metrics.targets import Annotation, ScrapeTarget
from webui.store.base import StoreBase


def annotations_query(
    start: float, end: float, *, agent: str | None, group: str | None, limit: int
) -> tuple[str, tuple[object, ...]]:
    """The SQL reading revision applies for chart markers: of one agent, of a group's current agents
    (a join on the agent's group now), or of the whole fleet."""
    sql = "SELECT e.agent_id, e.at, e.revision FROM agent_events e "
    args: list[object] = []
    if group is not None:
        sql += "JOIN agents a ON a.id = e.agent_id AND a.group_name = ? "
        args.append(group)
    sql += "WHERE e.kind = 'applied' AND e.at >= ? AND e.at < ? "
    args += [start, end]
    if agent is not None:
        sql += "AND e.agent_id = ? "
        args.append(agent)
    sql += "ORDER BY e.at LIMIT ?"
    args.append(limit)
    return sql, tuple(args)


class ScrapeMixin(StoreBase):
    def scrape_targets(self, seen_since: float) -> list[ScrapeTarget]:
        """Agents with a metrics URL (pinned at registration, webui/scrape_policy.py) that reported at
        or after `seen_since`, by id."""
        rows = (
            self.db.conn()
            .execute(
                "SELECT id, metrics_url, group_name FROM agents"
                " WHERE metrics_url IS NOT NULL AND metrics_url != '' AND last_seen >= ? ORDER BY id",
                (seen_since,),
            )
            .fetchall()
        )
        return [ScrapeTarget(str(r[0]), str(r[1]), None if r[2] is None else str(r[2])) for r in rows]

    def applied_revisions(
        self, start: float, end: float, *, agent: str | None, group: str | None, limit: int
    ) -> list[Annotation]:
        """Revision applies in [start, end) (agent events of kind `applied`), oldest first."""
        sql, args = annotations_query(start, end, agent=agent, group=group, limit=limit)
        rows = self.db.conn().execute(sql, args).fetchall()
        return [Annotation(str(r[0]), float(r[1]), None if r[2] is None else str(r[2])) for r in rows]
