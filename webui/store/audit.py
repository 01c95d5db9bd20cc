"""The audit log (who did what, when) and the reconciler's run reports."""

from __future__ import annotations

from typing import Any

from pydantic import TypeAdapter

from schemas.api import AuditEntry, AuditList, ReconcileRunList, ReconcileRunReport, ReconcileRunView
from schemas.diagnostics import Diagnostic
from webui.store.base import StoreBase, dt_req, dumps, loads, page_rows, record_audit, ts

_DIAGS = TypeAdapter(list[Diagnostic])


class AuditMixin(StoreBase):
    def audit(
        self, actor: str, role: str, action: str, target: str | None, detail: dict[str, Any] | None
    ) -> None:
        with self.db.write() as conn:
            record_audit(conn, self.clock(), actor, role, action, target, detail)

    def list_audit(
        self, *, limit: int = 100, offset: int = 0, action: str | None = None, target: str | None = None
    ) -> AuditList:
        clauses: list[str] = []
        args: list[Any] = []
        if action:
            clauses.append("action = ?")
            args.append(action)
        if target:
            clauses.append("target = ?")
            args.append(target)
        where = (" WHERE " + " AND ".join(clauses)) if clauses else ""
        with self.db.read() as conn:
            rows, page = page_rows(conn, "audit", where, args, "id DESC", limit=limit, offset=offset)
        items = [
            AuditEntry(
                id=r["id"],
                at=dt_req(r["at"]),
                actor=r["actor"],
                role=r["role"],
                action=r["action"],
                target=r["target"],
                detail=loads(r["detail"]),
            )
            for r in rows
        ]
        return AuditList(items=items, page=page)

    def prune(self, *, events_older_than_s: float, runs_older_than_s: float) -> dict[str, int]:
        """Retention: drop agent events, finished commands and reconcile runs past their age.

        The audit log is kept (who did what is worth its few rows); so is every revision.
        """
        now = self.clock()
        with self.db.write() as conn:
            events = conn.execute(
                "DELETE FROM agent_events WHERE at < ?", (now - events_older_than_s,)
            ).rowcount
            commands = conn.execute(
                "DELETE FROM commands WHERE state IN ('done', 'failed') AND issued_at < ?",
                (now - events_older_than_s,),
            ).rowcount
            runs = conn.execute(
                "DELETE FROM reconcile_runs WHERE finished_at < ?", (now - runs_older_than_s,)
            ).rowcount
        return {"agent_events": events, "commands": commands, "reconcile_runs": runs}

    def add_reconcile_run(self, run: ReconcileRunReport) -> ReconcileRunView:
        with self.db.write() as conn:
            row = conn.execute(
                "INSERT INTO reconcile_runs (started_at, finished_at, source, ref, commit_sha, outcome,"
                " diagnostics, timings, error) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
                (
                    ts(run.started_at),
                    ts(run.finished_at),
                    run.source,
                    run.ref,
                    run.commit_sha,
                    run.outcome,
                    _DIAGS.dump_json(run.diagnostics).decode(),
                    dumps(run.timings_s),
                    run.error,
                ),
            ).fetchone()
            run_id = int(row[0])
        return ReconcileRunView(
            id=run_id,
            started_at=run.started_at,
            finished_at=run.finished_at,
            source=run.source,
            ref=run.ref,
            commit_sha=run.commit_sha,
            outcome=run.outcome,
            diagnostics=run.diagnostics,
            timings_s=run.timings_s,
            error=run.error,
        )

    def list_reconcile_runs(self, *, limit: int = 50, offset: int = 0) -> ReconcileRunList:
        with self.db.read() as conn:
            rows, page = page_rows(conn, "reconcile_runs", "", (), "id DESC", limit=limit, offset=offset)
        items = [
            ReconcileRunView(
                id=r["id"],
                started_at=dt_req(r["started_at"]),
                finished_at=dt_req(r["finished_at"]),
                source=r["source"],
                ref=r["ref"],
                commit_sha=r["commit_sha"],
                outcome=r["outcome"],
                diagnostics=_DIAGS.validate_json(r["diagnostics"]),
                timings_s=loads(r["timings"]),
                error=r["error"],
            )
            for r in rows
        ]
        return ReconcileRunList(items=items, page=page)
