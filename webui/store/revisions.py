"""Revisions: atomic publish with compare-and-set, history, groups, diffs and pipelines."""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass
from typing import Any

from schemas.api import (
    GroupDetail,
    GroupHistoryEntry,
    GroupRevision,
    GroupView,
    PipelineGraph,
    PublishResult,
    RevisionDetail,
    RevisionList,
    RevisionPublish,
    RevisionSummary,
)
from schemas.common import config_hash
from schemas.signing import Untrusted, peek_config
from webui.store.base import dt_req, dumps, loads, page_rows, record_audit, ts
from webui.store.counts import rebuild_counts
from webui.store.db import Conn
from webui.store.errors import Conflict, Invalid, NotFound
from webui.store.groups import GroupSelector, resolve_group
from webui.store.rollouts import RolloutsMixin


@dataclass(frozen=True)
class ServedConfig:
    """What the config endpoint serves for one group of the current revision."""

    revision: str
    group: str
    config_hash: str
    body: bytes
    statement: str | None = None


# a publication with its commit's details: the rows of the revision history
_PUBLISHED = "publications p JOIN revisions r USING (commit_sha)"
_SUMMARY_COLUMNS = "p.seq, p.commit_sha, p.published_at, r.message, r.author, r.committed_at"


class RevisionsMixin(RolloutsMixin):
    # --- publish ------------------------------------------------------------------------------------

    def publish(self, rev: RevisionPublish, *, actor: str = "", role: str = "reconciler") -> PublishResult:
        """Make `rev` the current revision in one transaction, or raise Conflict (revision_conflict).

        Agents see the old revision or the new one: the config endpoint reads inside one snapshot,
        and SQLite's WAL rolls back a transaction cut short by a crash.
        """
        names = [g.name for g in rev.groups]
        if len(set(names)) != len(names):
            raise Invalid("group names must be unique")
        pnames = [p.name for p in rev.pipelines]
        if len(set(pnames)) != len(pnames):
            raise Invalid("pipeline names must be unique")
        huge = [g.name for g in rev.groups if not -(2**63) <= g.priority < 2**63]
        if huge:
            raise Invalid(
                "priority out of range (64-bit)",
                details={"groups": huge},
            )
        bad = [g.name for g in rev.groups if config_hash(g.config) != g.config_hash]
        if bad:
            raise Invalid(
                "config_hash does not match the sha256 of config",
                details={"groups": bad},
            )
        expiries = _check_statements(rev)
        now = self.clock()
        with self.db.write() as conn:
            self.db.lock(conn, "publish")  # compare-and-set across worker processes and replicas
            current = self._current_sha(conn)
            if rev.commit_sha == current:
                if self._resign(conn, rev, expiries):
                    record_audit(conn, now, actor, role, "resign", rev.commit_sha, None)
                    return PublishResult(commit_sha=rev.commit_sha, outcome="resigned")
                return PublishResult(commit_sha=rev.commit_sha, outcome="unchanged")
            if self._rolled_back(conn, rev.commit_sha):
                raise Conflict(
                    f"commit {rev.commit_sha[:12]} was rolled back by a rollout: publish a later commit",
                    code="commit_rolled_back",
                    details={"commit_sha": rev.commit_sha},
                )
            if rev.previous_commit_sha != current:
                raise Conflict(
                    "the server's current revision is not the expected previous revision",
                    code="revision_conflict",
                    details={"current": current, "expected": rev.previous_commit_sha},
                )
            exists = conn.execute(
                "SELECT 1 FROM revisions WHERE commit_sha = ?", (rev.commit_sha,)
            ).fetchone()
            if exists:
                # Re-publishing an older commit (a rollback): its content is immutable; replace it only
                # if the reconciler sends something else for the same SHA (a compiler upgrade).
                conn.execute("DELETE FROM revision_groups WHERE commit_sha = ?", (rev.commit_sha,))
                conn.execute("DELETE FROM revision_pipelines WHERE commit_sha = ?", (rev.commit_sha,))
                conn.execute(
                    "UPDATE revisions SET message=?, author=?, committed_at=?, source=? WHERE commit_sha=?",
                    (rev.message, rev.author, ts(rev.committed_at), rev.source, rev.commit_sha),
                )
            else:
                conn.execute(
                    "INSERT INTO revisions (commit_sha, message, author, committed_at, source, created_at)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    (rev.commit_sha, rev.message, rev.author, ts(rev.committed_at), rev.source, now),
                )
            conn.executemany(
                "INSERT INTO revision_groups (commit_sha, name, selector, priority, config, config_hash,"
                " pipelines, statement, statement_expires_at, collector_version)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        rev.commit_sha,
                        g.name,
                        dumps(g.selector),
                        g.priority,
                        g.config,
                        g.config_hash,
                        dumps(g.pipelines),
                        g.statement,
                        expiries.get(g.name),
                        g.collector_version,
                    )
                    for g in rev.groups
                ],
            )
            conn.executemany(
                "INSERT INTO revision_pipelines (commit_sha, name, graph) VALUES (?, ?, ?)",
                [(rev.commit_sha, p.name, p.model_dump_json(by_alias=True)) for p in rev.pipelines],
            )
            conn.execute(
                "INSERT INTO publications (commit_sha, previous_sha, published_at, published_by)"
                " VALUES (?, ?, ?, ?)",
                (rev.commit_sha, current, now, actor),
            )
            self._reresolve_groups(conn, rev.groups)
            record_audit(conn, now, actor, role, "publish", rev.commit_sha, {"previous": current})
            started = self._start_rollouts(conn, rev, current, actor, role)
            self._assign_served(conn)
            rebuild_counts(conn)  # every agent's desired config changed: recount in this transaction
            self._bump(conn, config=True, agents=True)
        return PublishResult(commit_sha=rev.commit_sha, outcome="published", rollouts=started)

    def _resign(self, conn: Conn, rev: RevisionPublish, expiries: dict[str, float]) -> bool:
        """Replace the statements of the current commit's groups whose config is unchanged (the
        reconciler refreshes them before they expire); True if any changed."""
        changed = 0
        for g in rev.groups:
            if g.statement is None:
                continue
            changed += conn.execute(
                "UPDATE revision_groups SET statement = ?, statement_expires_at = ? WHERE commit_sha = ?"
                " AND name = ? AND config_hash = ? AND statement IS DISTINCT FROM ?",
                (g.statement, expiries[g.name], rev.commit_sha, g.name, g.config_hash, g.statement),
            ).rowcount
        if changed:
            self._bump(conn, config=True)  # workers' config caches hold the old statements
        return changed > 0

    def _reresolve_groups(self, conn: Conn, groups: list[GroupRevision]) -> None:
        selectors = [GroupSelector(g.name, g.selector, g.priority) for g in groups]
        updates = []
        for row in conn.execute("SELECT id, labels, group_name FROM agents"):
            group = resolve_group(json.loads(row["labels"]), selectors)
            if group != row["group_name"]:
                updates.append((group, row["id"]))
        conn.executemany("UPDATE agents SET group_name = ? WHERE id = ?", updates)

    # --- reads ----------------------------------------------------------------------------------------

    def served_config(self, group: str, sha: str | None = None) -> ServedConfig | None:
        """The config of `group` at revision `sha` (None: the current revision), or None.

        A rollout pins agents to an explicit (commit, group) pair (agents.served_sha), so what is
        served, and the statement signed for it, always belong to one revision."""
        with self.db.read() as conn:
            sha = sha or self._current_sha(conn)
            if sha is None:
                return None
            row = conn.execute(
                "SELECT config, config_hash, statement FROM revision_groups"
                " WHERE commit_sha = ? AND name = ?",
                (sha, group),
            ).fetchone()
        if row is None:
            return None
        return ServedConfig(
            sha, group, str(row["config_hash"]), str(row["config"]).encode("utf-8"), row["statement"]
        )

    def resolve_sha(self, conn: Conn, sha: str) -> str:
        """A full SHA from a full SHA or a unique prefix (7+ hex digits)."""
        if len(sha) < 7 or any(c not in "0123456789abcdef" for c in sha):
            raise NotFound(f"no revision {sha!r}", details={"commit_sha": sha})
        rows = conn.execute(
            "SELECT commit_sha FROM revisions WHERE commit_sha >= ? AND commit_sha < ? LIMIT 2",
            (sha, sha + "g"),
        ).fetchall()
        if len(rows) != 1:
            raise NotFound(
                f"no revision {sha!r}" if not rows else f"ambiguous revision prefix {sha!r}",
                details={"commit_sha": sha},
            )
        return str(rows[0][0])

    def _summaries(self, conn: Conn, where: str, args: tuple[object, ...]) -> list[RevisionSummary]:
        rows = conn.execute(f"SELECT {_SUMMARY_COLUMNS} FROM {_PUBLISHED}{where}", args).fetchall()
        return self._summarise(conn, rows)

    def _summarise(self, conn: Conn, rows: list[Any]) -> list[RevisionSummary]:
        current_seq = self._current_seq(conn)
        out = []
        for r in rows:
            rows_g = conn.execute(
                "SELECT name, config_hash, statement_expires_at FROM revision_groups WHERE commit_sha = ?"
                " ORDER BY name",
                (r["commit_sha"],),
            ).fetchall()
            groups = {g["name"]: g["config_hash"] for g in rows_g}
            expiries = [g["statement_expires_at"] for g in rows_g]
            signed_until = None if not expiries or None in expiries else dt_req(min(expiries))
            out.append(
                RevisionSummary(
                    commit_sha=r["commit_sha"],
                    published_at=dt_req(r["published_at"]),
                    message=r["message"],
                    author=r["author"],
                    committed_at=None if r["committed_at"] is None else dt_req(r["committed_at"]),
                    groups=groups,
                    current=r["seq"] == current_seq,
                    signed_until=signed_until,
                )
            )
        return out

    @staticmethod
    def _current_seq(conn: Conn) -> int | None:
        row = conn.execute("SELECT MAX(seq) FROM publications").fetchone()
        return None if row[0] is None else int(row[0])

    def list_revisions(self, *, limit: int = 50, offset: int = 0) -> RevisionList:
        """Publications, newest first (a commit published twice appears twice)."""
        with self.db.read() as conn:
            # every publication has its revision (a foreign key): the join counts the publications
            rows, page = page_rows(
                conn, _PUBLISHED, "", (), "p.seq DESC", limit=limit, offset=offset, columns=_SUMMARY_COLUMNS
            )
            items = self._summarise(conn, rows)
        return RevisionList(items=items, page=page)

    def get_revision(self, sha: str) -> RevisionDetail:
        with self.db.read() as conn:
            full = self.resolve_sha(conn, sha)
            items = self._summaries(conn, " WHERE p.commit_sha = ? ORDER BY p.seq DESC LIMIT 1", (full,))
            rev = conn.execute("SELECT source FROM revisions WHERE commit_sha = ?", (full,)).fetchone()
            pub = conn.execute(
                "SELECT previous_sha, published_by FROM publications WHERE commit_sha = ? ORDER BY seq DESC",
                (full,),
            ).fetchone()
            groups = [
                self._group_revision(g)
                for g in conn.execute(
                    "SELECT * FROM revision_groups WHERE commit_sha = ? ORDER BY name", (full,)
                )
            ]
            pipelines = [
                str(p[0])
                for p in conn.execute(
                    "SELECT name FROM revision_pipelines WHERE commit_sha = ? ORDER BY name", (full,)
                )
            ]
        return RevisionDetail(
            revision=items[0],
            source=rev["source"],
            published_by=pub["published_by"],
            previous_commit_sha=pub["previous_sha"],
            group_configs=groups,
            pipelines=pipelines,
        )

    @staticmethod
    def _group_revision(g: Any) -> GroupRevision:
        return GroupRevision(
            name=g["name"],
            selector=loads(g["selector"]),
            priority=g["priority"],
            config=g["config"],
            config_hash=g["config_hash"],
            pipelines=loads(g["pipelines"]),
            statement=g["statement"],
            collector_version=g["collector_version"],
        )

    def list_groups(self) -> tuple[list[GroupView], str | None]:
        with self.db.read() as conn:
            sha = self._current_sha(conn)
            if sha is None:
                return [], None
            return self._group_views(conn, sha, None), sha

    def _group_views(self, conn: Conn, sha: str, name: str | None) -> list[GroupView]:
        # agents per group from the maintained counts (webui/store/counts.py), not a scan of agents
        counts = {
            str(r[0]): int(r[1])
            for r in conn.execute("SELECT group_name, SUM(n) FROM agent_sync_counts GROUP BY group_name")
            if r[0]
        }
        sql = "SELECT * FROM revision_groups WHERE commit_sha = ?"
        args: tuple[object, ...] = (sha,)
        if name is not None:
            sql += " AND name = ?"
            args = (sha, name)
        return [
            GroupView(
                name=g["name"],
                selector=loads(g["selector"]),
                priority=g["priority"],
                config_hash=g["config_hash"],
                revision=sha,
                pipelines=loads(g["pipelines"]),
                agents=counts.get(g["name"], 0),
            )
            for g in conn.execute(sql + " ORDER BY priority DESC, name", args)
        ]

    def get_group(self, name: str, *, diff: tuple[str, str] | None = None) -> GroupDetail:
        with self.db.read() as conn:
            sha = self._current_sha(conn)
            views = [] if sha is None else self._group_views(conn, sha, name)
            if sha is None or not views:
                raise NotFound(f"no group {name!r} in the current revision", details={"group": name})
            config = conn.execute(
                "SELECT config FROM revision_groups WHERE commit_sha = ? AND name = ?", (sha, name)
            ).fetchone()[0]
            history = self._group_history(conn, name)
            text = None if diff is None else self._group_diff(conn, name, *diff)
        return GroupDetail(group=views[0], config=config, history=history, diff=text)

    def _group_history(self, conn: Conn, name: str) -> list[GroupHistoryEntry]:
        rows = conn.execute(
            "SELECT p.commit_sha, p.published_at, r.message, g.config_hash FROM publications p"
            " JOIN revisions r USING (commit_sha)"
            " LEFT JOIN revision_groups g ON g.commit_sha = p.commit_sha AND g.name = ?"
            " ORDER BY p.seq",
            (name,),
        ).fetchall()
        out: list[GroupHistoryEntry] = []
        previous: str | None = None
        for i, r in enumerate(rows):
            if i == 0 and r["config_hash"] is None:
                continue
            if i > 0 and r["config_hash"] == previous:
                continue
            previous = r["config_hash"]
            out.append(
                GroupHistoryEntry(
                    commit_sha=r["commit_sha"],
                    published_at=dt_req(r["published_at"]),
                    config_hash=r["config_hash"],
                    message=r["message"],
                )
            )
        out.reverse()  # newest first
        return out

    def _group_diff(self, conn: Conn, name: str, a: str, b: str) -> str:
        texts = []
        shas = []
        for sha in (a, b):
            full = self.resolve_sha(conn, sha)
            row = conn.execute(
                "SELECT config FROM revision_groups WHERE commit_sha = ? AND name = ?", (full, name)
            ).fetchone()
            texts.append("" if row is None else str(row[0]))
            shas.append(full)
        return "".join(
            difflib.unified_diff(
                texts[0].splitlines(keepends=True),
                texts[1].splitlines(keepends=True),
                fromfile=f"{name}@{shas[0][:12]}",
                tofile=f"{name}@{shas[1][:12]}",
            )
        )

    def list_pipelines(self) -> tuple[list[PipelineGraph], str | None]:
        with self.db.read() as conn:
            sha = self._current_sha(conn)
            if sha is None:
                return [], None
            rows = conn.execute(
                "SELECT graph FROM revision_pipelines WHERE commit_sha = ? ORDER BY name", (sha,)
            ).fetchall()
        return [PipelineGraph.model_validate_json(r[0]) for r in rows], sha

    def get_pipeline(self, name: str) -> PipelineGraph:
        with self.db.read() as conn:
            sha = self._current_sha(conn)
            row = None
            if sha is not None:
                row = conn.execute(
                    "SELECT graph FROM revision_pipelines WHERE commit_sha = ? AND name = ?", (sha, name)
                ).fetchone()
        if row is None:
            raise NotFound(f"no pipeline {name!r} in the current revision", details={"pipeline": name})
        return PipelineGraph.model_validate_json(row[0])


def _check_statements(rev: RevisionPublish) -> dict[str, float]:
    """Each statement must be well formed and about this commit, group and config (the server holds
    no keys: agents check signatures). A 422 catches a reconciler bug here instead of on every agent.
    Returns group -> expires_at."""
    out: dict[str, float] = {}
    bad: dict[str, str] = {}
    for g in rev.groups:
        if g.statement is None:
            continue
        try:
            st = peek_config(g.statement)
        except Untrusted as exc:
            bad[g.name] = exc.reason
            continue
        if (st.group, st.commit, st.sha256, st.selector) != (
            g.name,
            rev.commit_sha,
            g.config_hash,
            dict(g.selector),
        ):
            bad[g.name] = "statement is about another group, selector, commit or config"
            continue
        out[g.name] = float(st.expires_at)
    if bad:
        raise Invalid("invalid signed statements", details=bad)
    return out
