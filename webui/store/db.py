"""The store's database seam, the SQLite backend, and the versioned migrations both backends run.

`StateDB` is what the store's mixins use: `conn()` for single statements, `write()` for a transaction
that writes (all or nothing), `read()` for a consistent snapshot, `lock(conn, name)` to serialize one kind
of writer across processes and replicas, and `dialect` for the few SQL fragments that differ
(webui/store/dialect.py). Two implementations: `Database` here (DATA_DIR/state.db) and
`webui.store.pg.PgDatabase` (`--database-url`). Write SQL once, in the subset both run; the store tests
run on both backends.

SQLite: WAL mode (readers never block the one writer), foreign keys on every connection, a busy timeout
so concurrent worker processes queue instead of failing. Migrations are numbered; `user_version` says
which ran (PostgreSQL: the `schema_version` table). They are written in SQLite's types; `Dialect.ddl`
maps them for PostgreSQL. The metrics process reads `agents` and `agent_events` through
webui/store/scrape.py: keep their columns.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any, Protocol

from schemas.errors import Permanent, RetryLater
from webui.store.dialect import SQLITE, Dialect
from webui.store.sync_sql import REBUILD_SQL, REBUILD_SQL_V4


class Cursor(Protocol):
    """What a statement returns on either backend (rows index by position and by column name)."""

    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...

    def __iter__(self) -> Iterator[Any]: ...


class Conn(Protocol):
    def execute(self, sql: str, parameters: Any = ..., /) -> Cursor: ...

    def executemany(self, sql: str, parameters: Any, /) -> Cursor: ...


class StateDB(Protocol):
    """The store's view of its database, whichever backend holds it."""

    @property
    def dialect(self) -> Dialect: ...

    def conn(self) -> Conn: ...

    def write(self) -> AbstractContextManager[Conn]: ...

    def read(self) -> AbstractContextManager[Conn]: ...

    def lock(self, conn: Conn, name: str) -> None: ...

    def notify_change(self, conn: Conn) -> None: ...

    def close(self) -> None: ...


MIGRATIONS: list[str] = [
    # 1: initial schema
    """
    CREATE TABLE meta (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        config_gen INTEGER NOT NULL DEFAULT 0,   -- bumped by every publish (config cache key)
        agents_gen INTEGER NOT NULL DEFAULT 0    -- bumped when an agent token or group changes
    );
    INSERT INTO meta (id, config_gen, agents_gen) VALUES (1, 0, 0);

    CREATE TABLE tokens (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        name TEXT NOT NULL DEFAULT '',
        role TEXT NOT NULL CHECK (role IN ('viewer','operator','admin','reconciler','enroll')),
        hash TEXT NOT NULL UNIQUE,               -- sha256 hex of the secret; the secret is never stored
        created_at REAL NOT NULL,
        revoked_at REAL
    );

    CREATE TABLE revisions (
        commit_sha TEXT PRIMARY KEY,
        message TEXT,
        author TEXT,
        committed_at REAL,
        source TEXT,
        created_at REAL NOT NULL
    );
    CREATE TABLE publications (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,   -- the latest row is the current revision
        commit_sha TEXT NOT NULL REFERENCES revisions(commit_sha),
        previous_sha TEXT,
        published_at REAL NOT NULL,
        published_by TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX publications_sha ON publications(commit_sha);
    CREATE TABLE revision_groups (
        commit_sha TEXT NOT NULL REFERENCES revisions(commit_sha) ON DELETE CASCADE,
        name TEXT NOT NULL,
        selector TEXT NOT NULL,                  -- JSON object
        priority INTEGER NOT NULL,
        config TEXT NOT NULL,
        config_hash TEXT NOT NULL,
        pipelines TEXT NOT NULL,                 -- JSON list of names
        PRIMARY KEY (commit_sha, name)
    );
    CREATE TABLE revision_pipelines (
        commit_sha TEXT NOT NULL REFERENCES revisions(commit_sha) ON DELETE CASCADE,
        name TEXT NOT NULL,
        graph TEXT NOT NULL,                     -- JSON of schemas.api.PipelineGraph
        PRIMARY KEY (commit_sha, name)
    );

    CREATE TABLE agents (
        id TEXT PRIMARY KEY,
        instance_id TEXT NOT NULL UNIQUE,
        hostname TEXT NOT NULL,
        platform TEXT NOT NULL DEFAULT '',
        agent_version TEXT NOT NULL DEFAULT '',
        collector_version TEXT,
        labels TEXT NOT NULL DEFAULT '{}',       -- JSON object
        metrics_url TEXT,
        group_name TEXT,                         -- resolved at registration and at every publish
        token_hash TEXT NOT NULL,
        registered_at REAL NOT NULL,
        last_seen REAL,                          -- unix seconds of the last registration or status
        run_state TEXT,
        collector_pid INTEGER,
        reported_hash TEXT,
        effective_revision TEXT,
        uptime_s REAL,
        stopped_by_operator INTEGER NOT NULL DEFAULT 0,
        last_apply TEXT,                         -- JSON of schemas.api.ApplyResult
        last_apply_result TEXT,
        last_apply_hash TEXT,
        last_apply_at REAL,
        last_drift_at REAL
    );
    CREATE INDEX agents_group ON agents(group_name);
    CREATE INDEX agents_last_seen ON agents(last_seen);

    CREATE TABLE agent_events (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        agent_id TEXT NOT NULL REFERENCES agents(id) ON DELETE CASCADE,
        at REAL NOT NULL,
        kind TEXT NOT NULL,
        revision TEXT,
        config_hash TEXT,
        detail TEXT                              -- JSON object or NULL
    );
    CREATE INDEX agent_events_agent_at ON agent_events(agent_id, at);
    CREATE INDEX agent_events_kind_at ON agent_events(kind, at);

    CREATE TABLE commands (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        agent_id TEXT NOT NULL REFERENCES agents(id) ON DELETE CASCADE,
        action TEXT NOT NULL,
        state TEXT NOT NULL DEFAULT 'queued',
        issued_by TEXT NOT NULL,
        issued_at REAL NOT NULL,
        delivered_at REAL,
        acked_at REAL,
        error TEXT
    );
    CREATE INDEX commands_pending ON commands(agent_id, state);

    CREATE TABLE audit (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        at REAL NOT NULL,
        actor TEXT NOT NULL,
        role TEXT NOT NULL,
        action TEXT NOT NULL,
        target TEXT,
        detail TEXT
    );

    CREATE TABLE reconcile_runs (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        started_at REAL NOT NULL,
        finished_at REAL NOT NULL,
        source TEXT NOT NULL,
        ref TEXT NOT NULL,
        commit_sha TEXT,
        outcome TEXT NOT NULL,
        diagnostics TEXT NOT NULL,
        timings TEXT NOT NULL,
        error TEXT
    );
    """,
    # 2: the fleet list is ordered by hostname; without this index every page sorts all agents
    # (10,000 agents: 85 ms at offset 0, 315 ms at offset 5000; with it under 4 ms). Added by the UI part.
    """
    CREATE INDEX IF NOT EXISTS agents_hostname ON agents(hostname, id);
    """,
    # 3: signed statements (schemas/signing.py), one per (commit, group), served with the config;
    # whether each agent verifies them. Added by the signing part.
    """
    ALTER TABLE revision_groups ADD COLUMN statement TEXT;
    ALTER TABLE revision_groups ADD COLUMN statement_expires_at REAL;
    ALTER TABLE agents ADD COLUMN verifies_signatures INTEGER;
    """,
    # 4: agents per (group, sync status), maintained by the store in the transactions that change an
    # agent (webui/store/counts.py), so the fleet page's counts do not scan every agent. Filled here
    # for an existing database.
    """
    CREATE TABLE agent_sync_counts (
        group_name TEXT NOT NULL,                -- '' for agents in no group
        sync_status TEXT NOT NULL,
        n INTEGER NOT NULL,
        PRIMARY KEY (group_name, sync_status)
    );
    """
    + ";\n".join(REBUILD_SQL_V4[1:])
    + ";\n",
    # 5: OpAMP agents (webui/store/opamp.py): the protocol state beside the common agent record.
    """
    CREATE TABLE IF NOT EXISTS opamp_agents (
        agent_id TEXT PRIMARY KEY REFERENCES agents(id) ON DELETE CASCADE,
        enroll_token_id INTEGER,                 -- set: authenticates with this enroll token (no own token)
        capabilities INTEGER NOT NULL DEFAULT 0, -- AgentCapabilities bits
        sequence_num TEXT,                       -- last sequence_num (uint64 as decimal text)
        healthy INTEGER,                         -- ComponentHealth.healthy; NULL: never reported
        health_status TEXT,
        health_error TEXT,
        started_at REAL,
        remote_status TEXT,                      -- APPLIED | APPLYING | FAILED | UNSET
        remote_hash TEXT,                        -- hex of last_remote_config_hash
        remote_error TEXT,
        applied_hash TEXT,                       -- last hash reported APPLIED
        effective_hash TEXT,                     -- sha256 of the reported effective config
        baseline_hash TEXT,                      -- first effective config after applying baseline_for
        baseline_for TEXT,
        drifted INTEGER NOT NULL DEFAULT 0,
        offered_hash TEXT,                       -- remote config hash last sent
        want_full_state INTEGER NOT NULL DEFAULT 0,
        delivered TEXT NOT NULL DEFAULT '[]',    -- JSON list of command ids sent in the last answer
        disconnected INTEGER NOT NULL DEFAULT 0
    );
    """,
    # 6: secrets every replica must share (the UI's session key) when several servers use one database
    """
    CREATE TABLE IF NOT EXISTS server_secrets (
        name TEXT PRIMARY KEY,
        value TEXT NOT NULL,
        created_at REAL NOT NULL
    );
    """,
    # 7: collector builds (`ctrltower collector publish`), kept in the database so every replica serves
    # them; the version each group asks for. Added by the signing part.
    """
    CREATE TABLE IF NOT EXISTS collector_builds (
        version TEXT PRIMARY KEY,
        sha256 TEXT NOT NULL,
        size INTEGER NOT NULL,
        statement TEXT,                          -- signed collector statement (schemas/signing.py) or NULL
        data BLOB NOT NULL,
        published_at REAL NOT NULL,
        published_by TEXT NOT NULL DEFAULT ''
    );
    ALTER TABLE revision_groups ADD COLUMN collector_version TEXT;
    """,
    # 8: scale-out metrics (metrics/shards.py): each agent's last scrape, shared by the replicas so
    # the one that takes over a shard computes rates against the previous owner's last scrape.
    """
    CREATE TABLE IF NOT EXISTS metric_baselines (
        agent TEXT PRIMARY KEY,
        ts REAL NOT NULL,
        vals TEXT NOT NULL                       -- JSON list of raw counter values (RAW_COUNTERS order)
    );
    """,
    # 9: hardening (issue 10). Enroll tokens scoped to label sets and the scope an agent registered
    # under; an operator's approval of one re-registration without proof of the agent's token; UI
    # sessions a logout revokes (the cookie names one by id; the row holds its sha256).
    """
    ALTER TABLE tokens ADD COLUMN label_scope TEXT;
    ALTER TABLE agents ADD COLUMN label_scope TEXT;
    ALTER TABLE agents ADD COLUMN reregister_until REAL;
    CREATE TABLE IF NOT EXISTS ui_sessions (
        id_hash TEXT PRIMARY KEY,
        token_id INTEGER NOT NULL,
        created_at REAL NOT NULL,
        expires_at REAL NOT NULL
    );
    """,
    # 10: progressive rollouts (webui/store/rollouts.py, docs/rollouts.md). Added by the rollouts part.
    # served_sha pins the revision an agent is served while a rollout (or a rollback) holds it.
    """
    ALTER TABLE agents ADD COLUMN served_sha TEXT;
    ALTER TABLE revisions ADD COLUMN rolled_back_at REAL;
    CREATE TABLE rollouts (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        policy TEXT NOT NULL,
        spec TEXT NOT NULL,                      -- JSON of schemas.repo.RolloutPolicy
        commit_sha TEXT NOT NULL REFERENCES revisions(commit_sha),
        bases TEXT NOT NULL,                     -- JSON {group: the revision it had before}
        state TEXT NOT NULL,                     -- schemas.api.RolloutState
        step INTEGER NOT NULL DEFAULT 0,         -- index into spec.steps; len(steps): every agent
        step_started_at REAL NOT NULL,
        weight INTEGER NOT NULL DEFAULT 0,       -- the highest weight step applied so far
        whole_groups TEXT NOT NULL DEFAULT '[]', -- JSON list: groups a group step took whole
        reason TEXT,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL,
        finished_at REAL
    );
    CREATE INDEX rollouts_state ON rollouts(state);
    CREATE TABLE rollout_measurements (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        rollout_id INTEGER NOT NULL REFERENCES rollouts(id) ON DELETE CASCADE,
        step INTEGER NOT NULL,
        at REAL NOT NULL,
        verdict TEXT NOT NULL,                   -- pass fail inconclusive
        checks TEXT NOT NULL                     -- JSON list of schemas.api.CheckResult
    );
    CREATE INDEX rollout_measurements_rollout ON rollout_measurements(rollout_id, id);
    CREATE TABLE group_stable (
        name TEXT PRIMARY KEY,                   -- a group covered by a rollout policy
        commit_sha TEXT NOT NULL                 -- the revision its agents run outside a rollout
    );
    CREATE TABLE leases (
        name TEXT PRIMARY KEY,
        holder TEXT NOT NULL,
        expires_at REAL NOT NULL
    );
    """
    + ";\n".join(REBUILD_SQL)  # the counts now join each agent's served revision: count again
    + ";\n",
    # 11: scale-out metrics: the agents whose scrapes fail, written by the replica that scrapes each
    # shard, so every replica shows the same agents `degraded` (metrics/shards.py).
    """
    CREATE TABLE IF NOT EXISTS metric_failing (
        agent TEXT PRIMARY KEY,
        shard INTEGER NOT NULL
    );
    CREATE INDEX IF NOT EXISTS metric_failing_shard ON metric_failing(shard);
    """,
    # 12: indexes for a large fleet (100,000 agents; bench/ui.py, docs/benchmarks.md). Added by the
    # ui-perf work. A group's agents (the fleet page's `?group=`, the groups page) are walked in hostname
    # order and its offline count ranges over their last_seen, instead of reading and sorting every
    # agent of the group (a group of 20,000: ~180 ms -> ~3 ms in-process). One agent's revision applies
    # (chart markers) are found by (agent, kind, time): the (kind, at) index read every agent's applies
    # in the range (bench/ui.py: 67,000 in the last hour, ~50 ms of CPU and 0.4 s under load per chart).
    # The scraper's targets (agents with a metrics URL, read every round) from a partial index of those
    # agents alone, in id order, instead of a walk of every agent. The search (`?q=`, a substring of
    # hostname, id or instance id) scans an index holding those three instead of every agent's row
    # (~10x less to read); it also orders the fleet page, so it replaces agents_hostname (migration 2).
    """
    CREATE INDEX IF NOT EXISTS agents_search ON agents(hostname, id, instance_id);
    DROP INDEX IF EXISTS agents_hostname;
    CREATE INDEX IF NOT EXISTS agents_group_hostname ON agents(group_name, hostname, id);
    CREATE INDEX IF NOT EXISTS agents_group_last_seen ON agents(group_name, last_seen);
    CREATE INDEX IF NOT EXISTS agent_events_agent_kind_at ON agent_events(agent_id, kind, at);
    CREATE INDEX IF NOT EXISTS agents_scraped ON agents(id, last_seen)
        WHERE metrics_url IS NOT NULL AND metrics_url != '';
    """,
]


def connect(path: Path) -> sqlite3.Connection:
    """A connection with the settings every user of state.db needs."""
    conn = sqlite3.connect(path, timeout=10.0, isolation_level=None, check_same_thread=False)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute("PRAGMA busy_timeout = 10000")
    conn.execute("PRAGMA synchronous = NORMAL")  # WAL + NORMAL: durable across process crashes
    return conn


def migrate(path: Path) -> int:
    """Bring the database to the latest version; safe when several processes race to do it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = connect(path)
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("BEGIN IMMEDIATE")
        try:
            version = int(conn.execute("PRAGMA user_version").fetchone()[0])
            if version > len(MIGRATIONS):
                raise Permanent(
                    f"{path} has schema version {version}, newer than this server ({len(MIGRATIONS)})"
                )
            for number in range(version, len(MIGRATIONS)):
                for statement in _statements(MIGRATIONS[number]):
                    conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {number + 1}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return len(MIGRATIONS)
    finally:
        conn.close()


def _statements(script: str) -> Iterator[str]:
    # executescript() would COMMIT our transaction; split on complete statements instead.
    buf = ""
    for line in script.splitlines(keepends=True):
        buf += line
        if sqlite3.complete_statement(buf):
            stmt = buf.strip()
            if stmt:
                yield stmt
            buf = ""


class Database:
    """SQLite: one connection per thread (granian runs blocking threads in each worker process)."""

    dialect = SQLITE

    def __init__(self, path: Path) -> None:
        self.path = path
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()

    def conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = connect(self.path)
            self._local.conn = conn
            with self._lock:
                self._all.append(conn)
        return conn

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """A write transaction taken up front (BEGIN IMMEDIATE): all or nothing."""
        conn = self.conn()
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            raise RetryLater(f"database busy: {exc}") from exc
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        else:
            conn.execute("COMMIT")

    @contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        """A consistent snapshot for multi-statement reads."""
        conn = self.conn()
        conn.execute("BEGIN")
        try:
            yield conn
        finally:
            conn.execute("COMMIT")

    def lock(self, conn: Conn, name: str) -> None:
        """Nothing to do: BEGIN IMMEDIATE already made this transaction the only writer."""

    def notify_change(self, conn: Conn) -> None:
        """Nothing to do: workers read the counters themselves (one SQLite read per poll)."""

    def close(self) -> None:
        with self._lock:
            for conn in self._all:
                conn.close()
            self._all.clear()
        self._local = threading.local()
