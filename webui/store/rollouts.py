"""Rollouts in the store: started by a publish, moved by the controller and by operators, and the
revision each agent is served (docs/rollouts.md).

Tables (migration 5): `rollouts` (one row per rollout: policy, new commit, the previous revision of each
group, state, current step, weight so far), `rollout_measurements` (each analysis measurement with
every check's value, threshold and verdict: the evidence), `group_stable` (the revision a covered
group runs outside a rollout), `leases` (which server process drives rollouts), and `agents.served_sha`
(the revision an agent is pinned to; NULL: the current one).

Every change of state happens in one write transaction that also re-pins the agents, recounts the
sync statuses and writes the audit row, so a crash never leaves agents half-moved. Portable SQL only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from schemas.api import (
    ROLLOUT_ACTIVE,
    CheckResult,
    Measurement,
    RevisionPublish,
    RolloutAgents,
    RolloutList,
    RolloutStepView,
    RolloutView,
    Verdict,
)
from schemas.repo import RolloutPolicy
from webui.rollouts.selection import GroupServing, served_revisions
from webui.store.base import StoreBase, dt, dt_req, dumps, loads, page_rows, record_audit
from webui.store.counts import rebuild_counts
from webui.store.db import Conn
from webui.store.errors import Conflict, NotFound

_ACTIVE_SQL = "state IN ('progressing', 'paused')"


@dataclass(frozen=True)
class RolloutRow:
    """A rollout as the controller works with it (the policy parsed)."""

    id: int
    policy: RolloutPolicy
    commit_sha: str
    bases: dict[str, str]
    state: str
    step: int
    step_started_at: float
    weight: int
    whole_groups: tuple[str, ...]
    reason: str | None
    created_at: float
    updated_at: float
    finished_at: float | None

    @classmethod
    def of(cls, r: Any) -> RolloutRow:
        return cls(
            id=int(r["id"]),
            policy=RolloutPolicy.model_validate_json(r["spec"]),
            commit_sha=str(r["commit_sha"]),
            bases=dict(loads(r["bases"])),
            state=str(r["state"]),
            step=int(r["step"]),
            step_started_at=float(r["step_started_at"]),
            weight=int(r["weight"]),
            whole_groups=tuple(loads(r["whole_groups"])),
            reason=r["reason"],
            created_at=float(r["created_at"]),
            updated_at=float(r["updated_at"]),
            finished_at=r["finished_at"],
        )


class RolloutsMixin(StoreBase):
    # --- publish: start rollouts ------------------------------------------------------------------

    def _rolled_back(self, conn: Conn, sha: str) -> bool:
        row = conn.execute("SELECT rolled_back_at FROM revisions WHERE commit_sha = ?", (sha,)).fetchone()
        return row is not None and row[0] is not None

    def _start_rollouts(
        self, conn: Conn, rev: RevisionPublish, previous: str | None, actor: str, role: str
    ) -> list[int]:
        """Inside the publish transaction: supersede running rollouts, start one per policy whose
        groups' configs differ from what their agents run, pin every agent. Returns the new ids."""
        now = self.clock()
        new_hash = {g.name: g.config_hash for g in rev.groups}
        stable = {str(r[0]): str(r[1]) for r in conn.execute("SELECT name, commit_sha FROM group_stable")}
        for r in conn.execute(f"SELECT id FROM rollouts WHERE {_ACTIVE_SQL}").fetchall():
            conn.execute(
                "UPDATE rollouts SET state = 'superseded', reason = ?, updated_at = ?, finished_at = ?"
                " WHERE id = ?",
                (f"superseded by {rev.commit_sha[:12]}", now, now, r[0]),
            )
            self._audit(conn, now, actor, role, "rollout.supersede", int(r[0]), {"by": rev.commit_sha})
        covered = {g for p in rev.rollouts for g in p.groups if g in new_hash}
        for name in set(stable) - covered:
            conn.execute("DELETE FROM group_stable WHERE name = ?", (name,))
        started: list[int] = []
        for policy in rev.rollouts:
            groups = [g for g in policy.groups if g in new_hash]
            bases: dict[str, str] = {}
            for g in groups:
                base = stable.get(g) or previous
                if base is not None and self._hash_of(conn, base, g) is not None:
                    bases[g] = base
            changed = [g for g in bases if self._hash_of(conn, bases[g], g) != new_hash[g]]
            for g in groups:
                if not changed or g not in bases:  # same config, or nothing to go back to: at once
                    self._set_stable(conn, g, rev.commit_sha)
            if not changed:
                continue
            row = conn.execute(
                "INSERT INTO rollouts (policy, spec, commit_sha, bases, state, step, step_started_at,"
                " weight, whole_groups, reason, created_at, updated_at) VALUES"
                " (?, ?, ?, ?, 'progressing', 0, ?, 0, '[]', NULL, ?, ?) RETURNING id",
                (policy.name, policy.model_dump_json(), rev.commit_sha, dumps(bases), now, now, now),
            ).fetchone()
            rid = int(row[0])
            started.append(rid)
            self._audit(
                conn,
                now,
                actor,
                role,
                "rollout.start",
                rid,
                {
                    "policy": policy.name,
                    "commit": rev.commit_sha,
                    "groups": sorted(bases),
                    "changed": changed,
                },
            )
        return started

    @staticmethod
    def _hash_of(conn: Conn, sha: str, group: str) -> str | None:
        row = conn.execute(
            "SELECT config_hash FROM revision_groups WHERE commit_sha = ? AND name = ?", (sha, group)
        ).fetchone()
        return None if row is None else str(row[0])

    @staticmethod
    def _set_stable(conn: Conn, group: str, sha: str) -> None:
        conn.execute(
            "INSERT INTO group_stable (name, commit_sha) VALUES (?, ?)"
            " ON CONFLICT (name) DO UPDATE SET commit_sha = excluded.commit_sha",
            (group, sha),
        )

    @staticmethod
    def _audit(
        conn: Conn,
        at: float,
        actor: str,
        role: str,
        action: str,
        rollout_id: int,
        detail: dict[str, Any] | None,
    ) -> None:
        record_audit(conn, at, actor, role, action, f"rollout:{rollout_id}", detail)

    # --- who is served what ---------------------------------------------------------------------------

    def _assign_served(self, conn: Conn) -> int:
        """Pin every agent to the revision the rollouts say (inside the caller's transaction).

        Returns how many agents moved; when any did, the sync counts are rebuilt and the workers'
        caches invalidated (their agents' auth rows carry served_sha)."""
        serving, stable = serving_plan(conn)
        rows = conn.execute("SELECT id, group_name, served_sha FROM agents").fetchall()
        wanted = served_revisions(((str(r[0]), r[1]) for r in rows), serving, stable)
        moves = [(wanted[str(r[0])], str(r[0])) for r in rows if wanted[str(r[0])] != r[2]]
        if moves:
            conn.executemany("UPDATE agents SET served_sha = ? WHERE id = ?", moves)
            rebuild_counts(conn)
            self._bump(conn, config=True, agents=True)
        return len(moves)

    def assign_served(self) -> int:
        with self.db.write() as conn:
            return self._assign_served(conn)

    # --- the controller's view ------------------------------------------------------------------------

    def active_rollouts(self) -> list[RolloutRow]:
        rows = self.db.conn().execute(f"SELECT * FROM rollouts WHERE {_ACTIVE_SQL} ORDER BY id").fetchall()
        return [RolloutRow.of(r) for r in rows]

    def rollout_row(self, rollout_id: int) -> RolloutRow:
        row = self.db.conn().execute("SELECT * FROM rollouts WHERE id = ?", (rollout_id,)).fetchone()
        if row is None:
            raise NotFound(f"no rollout {rollout_id}", details={"rollout_id": rollout_id})
        return RolloutRow.of(row)

    def acquire_lease(self, name: str, holder: str, ttl_s: float) -> bool:
        """Take or renew the lease `name` for `holder` until now + ttl; False while another holds it."""
        now = self.clock()
        with self.db.write() as conn:
            self.db.lock(conn, "lease:" + name)  # racing replicas: one reads, decides and writes at a time
            row = conn.execute("SELECT holder, expires_at FROM leases WHERE name = ?", (name,)).fetchone()
            if row is None:
                conn.execute(
                    "INSERT INTO leases (name, holder, expires_at) VALUES (?, ?, ?)",
                    (name, holder, now + ttl_s),
                )
                return True
            if row[0] != holder and float(row[1]) > now:
                return False
            conn.execute(
                "UPDATE leases SET holder = ?, expires_at = ? WHERE name = ?", (holder, now + ttl_s, name)
            )
            return True

    def release_lease(self, name: str, holder: str) -> None:
        with self.db.write() as conn:
            conn.execute("DELETE FROM leases WHERE name = ? AND holder = ?", (name, holder))

    def rollout_agents(self, rollout: RolloutRow) -> list[Any]:
        """The agents of the rollout's groups with what the analysis needs (served, desired, reported)."""
        groups = dumps(sorted(rollout.bases))
        return list(
            self.db.conn()
            .execute(
                "SELECT a.id, a.group_name, a.served_sha, a.reported_hash, a.last_apply_result,"
                " a.last_apply_hash, a.last_apply_at, a.last_seen, g.config_hash AS desired_hash"
                " FROM agents a"
                " LEFT JOIN revision_groups g ON g.name = a.group_name AND g.commit_sha = a.served_sha"
                f" WHERE a.group_name IN ({self.db.dialect.json_list('?')})",
                (groups,),
            )
            .fetchall()
        )

    def crashes_since(self, agent_ids: list[str], since: float) -> int:
        """Collector crashes the agents reported since `since` (state changes into 'crashed')."""
        row = (
            self.db.conn()
            .execute(
                "SELECT COUNT(*) FROM agent_events WHERE kind = 'state' AND at >= ?"
                f" AND agent_id IN ({self.db.dialect.json_list('?')}) AND detail LIKE ?",
                (since, dumps(agent_ids), '%"to":"crashed"%'),
            )
            .fetchone()
        )
        return int(row[0])

    def step_measurements(self, rollout_id: int, step: int, since: float) -> list[Measurement]:
        rows = (
            self.db.conn()
            .execute(
                "SELECT * FROM rollout_measurements WHERE rollout_id = ? AND step = ? AND at >= ?"
                " ORDER BY id",
                (rollout_id, step, since),
            )
            .fetchall()
        )
        return [_measurement(r) for r in rows]

    def last_baseline(self, rollout_id: int) -> float | None:
        """The newest old-revision per-agent rate a throughput check saw in this rollout."""
        for r in self.db.conn().execute(
            "SELECT checks FROM rollout_measurements WHERE rollout_id = ? ORDER BY id DESC LIMIT 50",
            (rollout_id,),
        ):
            for c in loads(r[0]):
                if c.get("baseline") is not None:
                    return float(c["baseline"])
        return None

    def add_measurement(
        self, rollout_id: int, step: int, verdict: Verdict, checks: list[CheckResult]
    ) -> None:
        with self.db.write() as conn:
            conn.execute(
                "INSERT INTO rollout_measurements (rollout_id, step, at, verdict, checks)"
                " VALUES (?, ?, ?, ?, ?)",
                (rollout_id, step, self.clock(), verdict, dumps([c.model_dump(mode="json") for c in checks])),
            )

    # --- transitions ------------------------------------------------------------------------------------

    def transition(
        self,
        rollout: RolloutRow,
        *,
        actor: str,
        role: str,
        action: str,
        state: str | None = None,
        step: int | None = None,
        weight: int | None = None,
        whole_groups: tuple[str, ...] | None = None,
        reason: str | None = None,
        restart_step: bool = False,
        detail: dict[str, Any] | None = None,
    ) -> RolloutRow:
        """Move a rollout (compare-and-set on its state and step: 409 if someone moved it first).

        Finishing states pin the groups: succeeded -> the new revision, rolled_back/aborted -> each
        group's previous revision (and the commit is marked rolled back, never published again)."""
        now = self.clock()
        with self.db.write() as conn:
            self.db.lock(conn, "publish")  # rollouts and pins change with publishes, never beside them
            row = conn.execute("SELECT * FROM rollouts WHERE id = ?", (rollout.id,)).fetchone()
            if row is None:
                raise NotFound(f"no rollout {rollout.id}", details={"rollout_id": rollout.id})
            current = RolloutRow.of(row)
            if current.state not in ROLLOUT_ACTIVE:
                raise Conflict(
                    f"rollout {rollout.id} is {current.state}: nothing to {action}",
                    code="rollout_finished",
                    details={"rollout_id": rollout.id, "state": current.state},
                )
            if (current.state, current.step) != (rollout.state, rollout.step):
                raise Conflict(
                    f"rollout {rollout.id} moved meanwhile (now {current.state} at step {current.step + 1})",
                    code="rollout_moved",
                    details={"rollout_id": rollout.id, "state": current.state, "step": current.step},
                )
            new_state = state or current.state
            new_step = current.step if step is None else step
            finished = new_state not in ROLLOUT_ACTIVE
            conn.execute(
                "UPDATE rollouts SET state = ?, step = ?, weight = ?, whole_groups = ?, reason = ?,"
                " step_started_at = ?, updated_at = ?, finished_at = ? WHERE id = ?",
                (
                    new_state,
                    new_step,
                    current.weight if weight is None else weight,
                    dumps(list(current.whole_groups if whole_groups is None else whole_groups)),
                    reason if reason is not None else current.reason,
                    now if (new_step != current.step or restart_step) else current.step_started_at,
                    now,
                    now if finished else None,
                    rollout.id,
                ),
            )
            if new_state == "succeeded":
                for group in current.bases:
                    self._set_stable(conn, group, current.commit_sha)
            elif new_state in ("rolled_back", "aborted"):
                for group, base in current.bases.items():
                    self._set_stable(conn, group, base)
                conn.execute(
                    "UPDATE revisions SET rolled_back_at = ? WHERE commit_sha = ?", (now, current.commit_sha)
                )
            self._audit(
                conn,
                now,
                actor,
                role,
                f"rollout.{action}",
                rollout.id,
                {"state": new_state, "step": new_step, "reason": reason, **(detail or {})},
            )
            self._assign_served(conn)
            return RolloutRow.of(
                conn.execute("SELECT * FROM rollouts WHERE id = ?", (rollout.id,)).fetchone()
            )

    # --- views ----------------------------------------------------------------------------------------------

    def list_rollouts(self, *, limit: int = 20, offset: int = 0, state: str | None = None) -> RolloutList:
        where, args = ("", ()) if state is None else (" WHERE state = ?", (state,))
        with self.db.read() as conn:
            rows, page = page_rows(conn, "rollouts", where, args, "id DESC", limit=limit, offset=offset)
            items = [self._view(conn, RolloutRow.of(r), measurements=5) for r in rows]
        return RolloutList(items=items, page=page)

    def get_rollout(self, rollout_id: int) -> RolloutView:
        with self.db.read() as conn:
            row = conn.execute("SELECT * FROM rollouts WHERE id = ?", (rollout_id,)).fetchone()
            if row is None:
                raise NotFound(f"no rollout {rollout_id}", details={"rollout_id": rollout_id})
            return self._view(conn, RolloutRow.of(row), measurements=None)

    def rollout_of_commit(self, sha: str) -> RolloutRow | None:
        row = (
            self.db.conn()
            .execute("SELECT * FROM rollouts WHERE commit_sha = ? ORDER BY id DESC LIMIT 1", (sha,))
            .fetchone()
        )
        return None if row is None else RolloutRow.of(row)

    def _view(self, conn: Conn, r: RolloutRow, *, measurements: int | None) -> RolloutView:
        steps = [
            RolloutStepView(
                index=i,
                action=s.action,
                description=s.describe(),
                status="done"
                if i < r.step
                else ("current" if i == r.step and r.state in ROLLOUT_ACTIVE else "pending"),
            )
            for i, s in enumerate(r.policy.steps)
        ]
        if r.state == "succeeded":
            steps = [s.model_copy(update={"status": "done"}) for s in steps]
        agents: dict[str, RolloutAgents] = {}
        for g in sorted(r.bases):
            counts = conn.execute(
                "SELECT SUM(CASE WHEN served_sha = ? THEN 1 ELSE 0 END), COUNT(*) FROM agents"
                " WHERE group_name = ?",
                (r.commit_sha, g),
            ).fetchone()
            new = int(counts[0] or 0)
            agents[g] = RolloutAgents(new=new, old=int(counts[1]) - new)
        sql = "SELECT * FROM rollout_measurements WHERE rollout_id = ? ORDER BY id DESC"
        args: tuple[Any, ...] = (r.id,)
        if measurements is not None:
            sql, args = sql + " LIMIT ?", (r.id, measurements)
        return RolloutView(
            id=r.id,
            policy=r.policy.name,
            commit_sha=r.commit_sha,
            bases=r.bases,
            state=r.state,
            step=r.step,
            steps=steps,
            weight=r.weight,
            whole_groups=list(r.whole_groups),
            reason=r.reason,
            on_failure=r.policy.on_failure,
            created_at=dt_req(r.created_at),
            updated_at=dt_req(r.updated_at),
            step_started_at=dt_req(r.step_started_at),
            finished_at=dt(r.finished_at),
            agents=agents,
            measurements=[_measurement(m) for m in conn.execute(sql, args)],
        )


def serving_plan(conn: Conn) -> tuple[dict[str, GroupServing], dict[str, str]]:
    """(group -> how its active rollout serves it, group -> its stable revision)."""
    serving: dict[str, GroupServing] = {}
    for r in conn.execute(f"SELECT * FROM rollouts WHERE {_ACTIVE_SQL} ORDER BY id"):
        row = RolloutRow.of(r)
        for group, base in row.bases.items():
            serving[group] = GroupServing(row.commit_sha, base, group in row.whole_groups, row.weight)
    stable = {str(r[0]): str(r[1]) for r in conn.execute("SELECT name, commit_sha FROM group_stable")}
    return serving, stable


def pin_agent(conn: Conn, agent_id: str, group: str | None) -> None:
    """Pin one (newly registered or regrouped) agent, inside the caller's transaction."""
    serving, stable = serving_plan(conn)
    sha = served_revisions([(agent_id, group)], serving, stable)[agent_id]
    conn.execute("UPDATE agents SET served_sha = ? WHERE id = ?", (sha, agent_id))


def rollout_note(conn: Conn, revision: str, group: str | None) -> dict[str, Any] | None:
    """What brought `revision` to an agent of `group`, for its 'applied' event (the chart markers say
    it): the step of the rollout of that commit that moved the group, or the rollback of one."""
    if group is None:
        return None
    row = conn.execute(
        "SELECT * FROM rollouts WHERE commit_sha = ? ORDER BY id DESC LIMIT 1", (revision,)
    ).fetchone()
    if row is not None:
        r = RolloutRow.of(row)
        if group in r.bases:
            moved = [s for s in r.policy.steps[: max(r.step, 1)] if s.action in ("group", "weight")]
            if r.state == "succeeded" or not moved:
                step = "done" if r.state == "succeeded" else "before the first step"
            else:
                step = moved[-1].describe()
            return {"rollout": r.id, "policy": r.policy.name, "step": step}
    row = conn.execute(
        "SELECT * FROM rollouts WHERE state IN ('rolled_back', 'aborted') ORDER BY id DESC LIMIT 1"
    ).fetchone()
    if row is not None:
        r = RolloutRow.of(row)
        if r.bases.get(group) == revision:
            return {"rollout": r.id, "policy": r.policy.name, "step": "rollback"}
    return None


def marker_label(revision: str | None, detail: dict[str, Any] | None) -> str:
    """A chart marker's text: the commit, and the rollout step that applied it when there was one."""
    label = (revision or "?")[:7]
    if detail and "rollout" in detail:
        label += f" rollout {detail['rollout']}: {detail.get('step', '')}"
    return label


def _measurement(r: Any) -> Measurement:
    return Measurement(
        id=int(r["id"]),
        step=int(r["step"]),
        at=dt_req(r["at"]),
        verdict=r["verdict"],
        checks=[CheckResult.model_validate(c) for c in loads(r["checks"])],
    )
