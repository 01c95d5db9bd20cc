"""Agents: registration, status reports, the fleet list with sync and run status, events."""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any, get_args

from schemas.api import (
    AgentEvent,
    AgentEventKind,
    AgentEventList,
    AgentList,
    AgentRegistration,
    AgentView,
    ApplyResult,
    Command,
    LabelScope,
    Page,
    RegistrationResponse,
    StatusReport,
)
from webui.store.base import dt, dt_req, dumps, loads, page_rows, record_audit, ts
from webui.store.counts import StatusCountsMixin
from webui.store.db import Conn
from webui.store.dialect import Dialect
from webui.store.errors import NotFound
from webui.store.groups import resolve_group
from webui.store.identity import check_takeover
from webui.store.opamp import with_opamp
from webui.store.rollouts import pin_agent, rollout_note
from webui.store.sync_sql import GROUP_OF_AGENT_JOIN, SERVED_GROUPS_CTE, SYNC_STATUS_CASE
from webui.store.tokens import hash_secret

AGENT_TOKEN_PREFIX = "cta_"
EVENT_KINDS: tuple[str, ...] = get_args(AgentEventKind)


@dataclass(frozen=True)
class AgentAuth:
    """What the config endpoint needs to know about an agent (cached per worker)."""

    agent_id: str
    token_hash: str
    group: str | None
    served_sha: str | None = None  # pinned by a rollout (webui/store/rollouts.py); None: the current one


@dataclass(frozen=True)
class AgentFilter:
    group: str | None = None
    status: str | None = None
    sync_status: str | None = None
    labels: tuple[tuple[str, str], ...] = ()
    search: str | None = None  # substring of hostname or id


# One query computes each agent's desired hash, sync status and run status, so filters, counts and
# pagination all happen in SQL (10,000+ agents on the fleet page). The sync status is the same CASE the
# maintained per-status counts use (webui/store/counts.py).
_AGENT_VIEW_SQL = f"""{SERVED_GROUPS_CTE}
SELECT a.*, g.config_hash AS desired_hash, g.commit_sha AS desired_revision,
  {SYNC_STATUS_CASE} AS sync_status,
  CASE
    WHEN a.last_seen IS NULL OR a.last_seen < :cutoff THEN 'offline'
    WHEN a.id IN ({{failing}}) THEN 'degraded'
    WHEN a.id IN (SELECT agent_id FROM opamp_agents WHERE healthy = 0) THEN 'degraded'
    ELSE 'online'
  END AS status
FROM agents a {GROUP_OF_AGENT_JOIN}
"""


def _agent_view_sql(dialect: Dialect) -> str:
    """The agent view as a subquery (aliased `v`: PostgreSQL requires a name for it)."""
    return "(" + _AGENT_VIEW_SQL.replace("{failing}", dialect.json_list(":failing")) + ") v"


def _clamp(at: datetime, now: float) -> float:
    """An agent's timestamp, no later than the server's clock: an event dated in the future would
    never be pruned by retention and would outrank every later apply or drift."""
    return min(ts(at) or now, now)


class AgentsMixin(StatusCountsMixin):
    # --- agent API ------------------------------------------------------------------------------------

    def register_agent(
        self, reg: AgentRegistration, *, scope: LabelScope | None = None
    ) -> RegistrationResponse:
        """Create or update the agent with this instance_id; always issue a fresh token.

        An instance_id already registered is taken over only with proof: `reg.agent_token` is that
        agent's current token, or an operator approved one re-registration (`approve_reregistration`).
        Otherwise 409 `instance_registered`, and nothing changes (the victim keeps its token and record).
        `scope`: the enroll token's label scope, kept with the agent (later label changes are checked).
        """
        now = self.clock()
        secret = AGENT_TOKEN_PREFIX + secrets.token_urlsafe(32)
        token_hash = hash_secret(secret)
        with self.db.write() as conn:
            selectors = self.current_selectors(conn)
            group = resolve_group(reg.labels, selectors)
            row = conn.execute(
                "SELECT id, token_hash, reregister_until FROM agents WHERE instance_id = ?",
                (reg.instance_id,),
            ).fetchone()
            if row is not None:
                check_takeover(row, reg, now)
            before = None if row is None else self._sync_cell(conn, str(row["id"]))
            fields = (
                reg.hostname,
                reg.platform,
                reg.agent_version,
                reg.collector_version,
                dumps(reg.labels),
                reg.metrics_url,
                group,
                token_hash,
                now,
            )
            scope_json = None if scope is None else dumps(scope)
            if row is None:
                agent_id = "ag_" + secrets.token_hex(8)
                conn.execute(
                    "INSERT INTO agents (hostname, platform, agent_version, collector_version, labels,"
                    " metrics_url, group_name, token_hash, last_seen, label_scope, id, instance_id,"
                    " registered_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (*fields, scope_json, agent_id, reg.instance_id, now),
                )
            else:
                agent_id = str(row["id"])
                conn.execute(
                    "UPDATE agents SET hostname=?, platform=?, agent_version=?, collector_version=?,"
                    " labels=?, metrics_url=?, group_name=?, token_hash=?, last_seen=?, label_scope=?,"
                    " reregister_until=NULL WHERE id=?",
                    (*fields, scope_json, agent_id),
                )
                self._bump(conn, agents=True)  # the old token is revoked: drop cached auth
            pin_agent(conn, agent_id, group)  # a rollout may serve its group two revisions
            self._event(
                conn, agent_id, now, "registered", None, None, {"hostname": reg.hostname, "group": group}
            )
            self._move_count(conn, before, self._sync_cell(conn, agent_id))
        return RegistrationResponse(
            agent_id=agent_id, agent_token=secret, poll_interval_s=self.poll_interval_s
        )

    def agent_auth(self, agent_id: str) -> AgentAuth | None:
        row = (
            self.db.conn()
            .execute("SELECT token_hash, group_name, served_sha FROM agents WHERE id = ?", (agent_id,))
            .fetchone()
        )
        if row is None:
            return None
        return AgentAuth(agent_id, str(row[0]), row[1], row[2])

    def all_agent_auth(self) -> dict[str, AgentAuth]:
        """Every agent's token hash and group, for the config cache (one query)."""
        rows = self.db.conn().execute("SELECT id, token_hash, group_name, served_sha FROM agents").fetchall()
        return {str(r[0]): AgentAuth(str(r[0]), str(r[1]), r[2], r[3]) for r in rows}

    def report_status(self, agent_id: str, report: StatusReport) -> list[Command]:
        """Record a status report; return the commands the agent has not acknowledged yet."""
        now = self.clock()
        with self.db.write() as conn:
            row = conn.execute("SELECT * FROM agents WHERE id = ?", (agent_id,)).fetchone()
            if row is None:
                raise NotFound(f"no agent {agent_id!r}: register again", details={"agent_id": agent_id})
            before = self._sync_cell(conn, agent_id)
            if row["run_state"] != report.collector_state:
                self._event(
                    conn,
                    agent_id,
                    now,
                    "state",
                    report.effective_revision,
                    report.effective_config_hash,
                    {"from": row["run_state"], "to": report.collector_state},
                )
            apply_cols: tuple[Any, ...] = (
                row["last_apply"],
                row["last_apply_result"],
                row["last_apply_hash"],
                row["last_apply_at"],
            )
            if report.last_apply is not None:
                la = report.last_apply
                apply_json = la.model_dump_json()
                if apply_json != row["last_apply"]:
                    kind = {"applied": "applied", "failed": "apply_failed"}.get(la.result, la.result)
                    detail = {"error": la.error} if la.error else None
                    if kind == "applied" and la.revision:  # which rollout step brought it (chart markers)
                        detail = rollout_note(conn, la.revision, row["group_name"])
                    self._event(conn, agent_id, _clamp(la.at, now), kind, la.revision, la.config_hash, detail)
                apply_cols = (apply_json, la.result, la.config_hash, _clamp(la.at, now))
            drift_at = row["last_drift_at"]
            for d in report.drift_events:
                at = _clamp(d.at, now)
                if row["last_drift_at"] is not None and at <= row["last_drift_at"]:
                    continue  # already recorded (an agent may send a drift again until it sees it stored)
                self._event(conn, agent_id, at, "drift", None, d.desired_hash, {"local_hash": d.local_hash})
                drift_at = at if drift_at is None else max(drift_at, at)
            for ack in report.acks:
                cur = conn.execute(
                    "UPDATE commands SET state = ?, acked_at = ?, error = ?"
                    " WHERE id = ? AND agent_id = ? AND state IN ('queued', 'delivered')",
                    (ack.result, now, ack.error, ack.id, agent_id),
                )
                if cur.rowcount:
                    self._event(
                        conn,
                        agent_id,
                        now,
                        "command_ack",
                        None,
                        None,
                        {"command_id": ack.id, "result": ack.result, "error": ack.error},
                    )
            conn.execute(
                "UPDATE agents SET last_seen=?, run_state=?, collector_pid=?, reported_hash=?,"
                " effective_revision=?, uptime_s=?, stopped_by_operator=?, verifies_signatures=?,"
                " last_apply=?,"
                " last_apply_result=?, last_apply_hash=?, last_apply_at=?, last_drift_at=? WHERE id=?",
                (
                    now,
                    report.collector_state,
                    report.collector_pid,
                    report.effective_config_hash,
                    report.effective_revision,
                    report.uptime_s,
                    int(report.stopped_by_operator),
                    None if report.verifies_signatures is None else int(report.verifies_signatures),
                    *apply_cols,
                    drift_at,
                    agent_id,
                ),
            )
            if report.collector_version is not None and report.collector_version != row["collector_version"]:
                # an upgrade (or a rollback of one) changed the running build since registration
                conn.execute(
                    "UPDATE agents SET collector_version = ? WHERE id = ?",
                    (report.collector_version, agent_id),
                )
                self._event(
                    conn,
                    agent_id,
                    now,
                    "collector",
                    None,
                    None,
                    {"from": row["collector_version"], "to": report.collector_version},
                )
            self._move_count(conn, before, self._sync_cell(conn, agent_id))
            pending = conn.execute(
                "SELECT id, action, issued_at FROM commands WHERE agent_id = ? AND state IN"
                " ('queued', 'delivered') ORDER BY id",
                (agent_id,),
            ).fetchall()
            conn.execute(
                "UPDATE commands SET state = 'delivered', delivered_at = ?"
                " WHERE agent_id = ? AND state = 'queued'",
                (now, agent_id),
            )
        return [Command(id=r["id"], action=r["action"], issued_at=dt_req(r["issued_at"])) for r in pending]

    @staticmethod
    def _event(
        conn: Conn,
        agent_id: str,
        at: float,
        kind: str,
        revision: str | None,
        config_hash: str | None,
        detail: dict[str, Any] | None,
    ) -> None:
        conn.execute(
            "INSERT INTO agent_events (agent_id, at, kind, revision, config_hash, detail)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (agent_id, at, kind, revision, config_hash, None if detail is None else dumps(detail)),
        )

    # --- control API ----------------------------------------------------------------------------------

    def _view_params(self) -> dict[str, Any]:
        return {"cutoff": self.clock() - self.offline_after_s, "failing": json.dumps(self._failing_agents())}

    def _filter_sql(self, f: AgentFilter, *, with_status: bool) -> tuple[str, dict[str, Any]]:
        clauses: list[str] = []
        params: dict[str, Any] = {}
        if f.group is not None:
            clauses.append("group_name = :group")
            params["group"] = f.group
        if with_status and f.status is not None:
            clauses.append("status = :status")
            params["status"] = f.status
        if f.sync_status is not None:
            clauses.append("sync_status = :sync")
            params["sync"] = f.sync_status
        for i, (key, value) in enumerate(f.labels):
            clauses.append(f"{self.db.dialect.json_field('labels', f':lk{i}')} = :lv{i}")
            params[f"lk{i}"] = key
            params[f"lv{i}"] = value
        if f.search:
            d = self.db.dialect
            # the ids from a scan of the index holding these three columns (migration 12), not of
            # every agent's row; the caller's query then looks up only the matching agents
            clauses.append(
                f"id IN (SELECT id FROM agents WHERE {d.contains('hostname', ':q')}"
                f" OR {d.contains('id', ':q')} OR {d.contains('instance_id', ':q')})"
            )
            params["q"] = f.search
        return (" WHERE " + " AND ".join(clauses)) if clauses else "", params

    def list_agents(
        self,
        f: AgentFilter | None = None,
        *,
        limit: int = 50,
        offset: int = 0,
        sort: str = "hostname",
    ) -> AgentList:
        """Agents matching the filter, a page of them, and counts per status and per sync status.

        `counts` is computed over every filter except `status` itself, so a UI can show all tabs.
        """
        f = f or AgentFilter()
        order = {
            "hostname": "hostname, id",
            "last_seen": "last_seen DESC, id",
            "registered": "registered_at DESC, id",
            "group": "group_name, hostname, id",
        }.get(sort, "hostname, id")
        params = self._view_params()
        where, fparams = self._filter_sql(f, with_status=True)
        cwhere, cparams = self._filter_sql(f, with_status=False)
        view = _agent_view_sql(self.db.dialect)
        with self.db.read() as conn:
            # The whole fleet (the fleet page's default) or one group (the group filter, the groups
            # page): maintained counts, no evaluation of every agent. Other filters count by scanning.
            if f.sync_status is None and not f.labels and not f.search:
                failing = json.loads(params["failing"])
                counts = self._fleet_counts(conn, params["cutoff"], failing, f.group)
                total = (
                    counts[f.status]
                    if f.status is not None
                    else sum(counts[s] for s in ("online", "degraded", "offline"))
                )
            else:
                counts = {"online": 0, "degraded": 0, "offline": 0}
                total = 0
                for r in conn.execute(
                    f"SELECT status, sync_status, COUNT(*) FROM (SELECT * FROM {view}{cwhere}) c"
                    " GROUP BY status, sync_status",
                    {**params, **cparams},
                ):
                    counts[r[0]] = counts.get(r[0], 0) + int(r[2])
                    counts[r[1]] = counts.get(r[1], 0) + int(r[2])
                    if f.status is None or r[0] == f.status:  # the page's total, from the same scan
                        total += int(r[2])
            if f.status is None and f.sync_status is None:
                rows = self._page_by_id(conn, view, where, fparams, params, order, limit, offset)
                page = Page(total=total, limit=limit, offset=offset)
            else:  # the page filters on a computed column: evaluate the view while walking the order
                rows, page = page_rows(
                    conn, view, where, {**params, **fparams}, order, limit=limit, offset=offset, total=total
                )
            items = with_opamp(conn, [self._agent_view(r) for r in rows])
        return AgentList(items=items, page=page, counts=counts)

    def _page_by_id(
        self,
        conn: Conn,
        view: str,
        where: str,
        fparams: dict[str, Any],
        params: dict[str, Any],
        order: str,
        limit: int,
        offset: int,
    ) -> list[Any]:
        """One page when every filter is on a stored column: the page's ids from `agents` alone (an
        index walk; OFFSET skips index entries, not evaluated view rows), then the view of those ids only.
        At 100,000 agents, `?offset=50000` evaluated 50,050 agents' sync and run status (~90 ms in-process);
        now it skips 50,000 entries of agents_hostname (~10 ms) and evaluates 50. Same rows, same order."""
        ids = [
            str(r[0])
            for r in conn.execute(
                f"SELECT id FROM agents{where} ORDER BY {order} LIMIT :page_limit OFFSET :page_offset",
                {**fparams, "page_limit": limit, "page_offset": offset},
            )
        ]
        if not ids:
            return []
        return list(
            conn.execute(
                f"SELECT * FROM {view} WHERE id IN ({self.db.dialect.json_list(':ids')}) ORDER BY {order}",
                {**params, "ids": json.dumps(ids)},
            ).fetchall()
        )

    def get_agent(self, agent_id: str) -> AgentView:
        with self.db.read() as conn:
            row = conn.execute(
                f"SELECT * FROM {_agent_view_sql(self.db.dialect)} WHERE id = :id",
                {**self._view_params(), "id": agent_id},
            ).fetchone()
            if row is None:
                raise NotFound(f"no agent {agent_id!r}", details={"agent_id": agent_id})
            return with_opamp(conn, [self._agent_view(row)])[0]

    def delete_agent(self, agent_id: str, *, actor: str, role: str) -> AgentView:
        """Forget a (decommissioned) agent: its row, events and commands; its token stops working.

        A live agent answers its next 404 by registering again (a new id). Audited.
        """
        view = self.get_agent(agent_id)
        with self.db.write() as conn:
            before = self._sync_cell(conn, agent_id)
            cur = conn.execute("DELETE FROM agents WHERE id = ?", (agent_id,))
            if not cur.rowcount:
                raise NotFound(f"no agent {agent_id!r}", details={"agent_id": agent_id})
            self._move_count(conn, before, None)
            self._bump(conn, agents=True)
            record_audit(
                conn, self.clock(), actor, role, "agent.delete", agent_id, {"hostname": view.hostname}
            )
        return view

    def get_agents(self, ids: list[str]) -> list[AgentView]:
        with self.db.read() as conn:
            rows = conn.execute(
                f"SELECT * FROM {_agent_view_sql(self.db.dialect)}"
                f" WHERE id IN ({self.db.dialect.json_list(':ids')})",
                {**self._view_params(), "ids": json.dumps(ids)},
            ).fetchall()
            return with_opamp(conn, [self._agent_view(r) for r in rows])

    @staticmethod
    def _agent_view(r: Any) -> AgentView:
        last_apply = None if r["last_apply"] is None else ApplyResult.model_validate_json(r["last_apply"])
        return AgentView(
            id=r["id"],
            instance_id=r["instance_id"],
            hostname=r["hostname"],
            platform=r["platform"],
            agent_version=r["agent_version"],
            collector_version=r["collector_version"],
            labels=loads(r["labels"]),
            metrics_url=r["metrics_url"],
            group=r["group_name"],
            desired_revision=r["desired_revision"],
            desired_hash=r["desired_hash"],
            reported_hash=r["reported_hash"],
            effective_revision=r["effective_revision"],
            sync_status=r["sync_status"],
            run_state=r["run_state"],
            status=r["status"],
            last_seen=dt(r["last_seen"]),
            registered_at=dt_req(r["registered_at"]),
            last_apply=last_apply,
            stopped_by_operator=bool(r["stopped_by_operator"]),
            verifies_signatures=None if r["verifies_signatures"] is None else bool(r["verifies_signatures"]),
        )

    def agent_events(
        self,
        agent_id: str,
        *,
        kinds: list[str] | None = None,
        since: float | None = None,
        until: float | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> AgentEventList:
        """Events of one agent, newest first; `since`/`until` are unix seconds (inclusive)."""
        clauses = ["agent_id = ?"]
        args: list[Any] = [agent_id]
        if kinds:
            clauses.append(f"kind IN ({self.db.dialect.json_list('?')})")
            args.append(json.dumps(kinds))
        if since is not None:
            clauses.append("at >= ?")
            args.append(since)
        if until is not None:
            clauses.append("at <= ?")
            args.append(until)
        where = " WHERE " + " AND ".join(clauses)
        with self.db.read() as conn:
            self._require_agent(conn, agent_id)
            rows, page = page_rows(
                conn, "agent_events", where, args, "at DESC, id DESC", limit=limit, offset=offset
            )
        return AgentEventList(
            items=[
                AgentEvent(
                    id=r["id"],
                    agent_id=r["agent_id"],
                    at=dt_req(r["at"]),
                    kind=r["kind"],
                    revision=r["revision"],
                    config_hash=r["config_hash"],
                    detail=loads(r["detail"]),
                )
                for r in rows
            ],
            page=page,
        )
