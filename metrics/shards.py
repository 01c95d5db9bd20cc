"""Scrape sharding across replicas (scale-out mode): who scrapes which agent, and the shared baselines.

Agents fall into `shards` fixed shards by a hash of their id (`shard_of`). Each replica's metrics process
holds some shards through PostgreSQL session advisory locks on a connection of its own: a lock is held by
exactly one session, so each agent is scraped by exactly one replica, and a replica that dies (even by
kill -9) loses its locks the moment PostgreSQL sees its connection close. Every `interval / 2` each
replica counts the live replicas (each holds one membership lock; `pg_locks` shows them), takes free
shards up to its fair share `ceil(shards / live)` and gives back any above it, so a dead replica's shards
move to the others within about one scrape interval and a new replica gets its share.

Targets (`ShardedTargets`): the whole fleet's, from the `TargetSource` the server passed in (its store
in PostgreSQL), filtered to the shards held once the read returned.

One more lock, the leader lease, says which replica runs the lake's rollups, retention and compaction.

Scrape health (`PgFailing`): each replica writes the failing agents of its shards to PostgreSQL every
scrape interval, and answers `/failing` from all rows, so every replica shows the same agents degraded.

Counter baselines (each agent's last scrape: time and raw counter values) are saved to PostgreSQL after
every flush, so the replica that takes over a shard computes its first rate against the previous owner's
last scrape: no rate spike and no gap beyond the move. A taken-over agent scraped less than 0.9 interval
ago (by the previous owner) waits for its next slot: never two scrapes of one agent in one interval.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import random
import threading
import zlib
from collections.abc import Iterable, Iterator

import psycopg

from metrics.parse import RAW_COUNTERS
from metrics.targets import Annotation, ScrapeTarget, TargetSource
from schemas.errors import RetryLater

log = logging.getLogger(__name__)
LEADER = -1  # the shard number of the leader lease (never an agent's shard)


def shard_of(agent_id: str, shards: int) -> int:
    """A stable shard in [0, shards): independent of the scrape offset's hash (another personalization)."""
    h = hashlib.blake2b(agent_id.encode(), digest_size=8, person=b"ct-shard").digest()
    return int.from_bytes(h, "big") % shards


def _namespace(schema: str, what: str) -> int:
    """A positive 31-bit advisory lock namespace per (schema, purpose): schemas never collide."""
    return zlib.crc32(f"{schema}:{what}".encode()) & 0x7FFFFFFF


class ShardLeases:
    """This replica's shards, held as session advisory locks on one dedicated connection."""

    def __init__(self, database_url: str, shards: int) -> None:
        self.database_url = database_url
        self.shards = shards
        self._conn: psycopg.Connection[tuple[object, ...]] | None = None
        self._held: frozenset[int] = frozenset()
        self._leader = False
        self._lock = threading.Lock()  # rebalance() runs in a worker thread; owned() anywhere
        self._member = random.randrange(1, 2**31 - 1) ^ os.getpid()
        self.moves = 0  # shards taken over since start (stats)

    # --- read by the scraper (any thread) --------------------------------------------------------------

    def owned(self) -> frozenset[int]:
        return self._held

    def owns(self, agent_id: str) -> bool:
        return shard_of(agent_id, self.shards) in self._held

    def is_leader(self) -> bool:
        return self._leader

    # --- the balancing round --------------------------------------------------------------------------

    def _connect(self) -> psycopg.Connection[tuple[object, ...]]:
        conn = psycopg.connect(self.database_url, autocommit=True)
        row = conn.execute("SELECT current_schema()").fetchone()
        schema = str(row[0]) if row else "public"
        self._ns_shard = _namespace(schema, "scrape-shard")
        self._ns_member = _namespace(schema, "scrape-member")
        conn.execute("SELECT pg_advisory_lock(%s, %s)", (self._ns_member, self._member))
        return conn

    def rebalance(self) -> frozenset[int]:
        """One round: keep the membership lock, take free shards up to the fair share, give back the
        excess, try for the leader lease. Returns the shards held now. Raises RetryLater when the
        database is unreachable (then this replica holds nothing: its session is gone)."""
        with self._lock:
            try:
                return self._rebalance()
            except psycopg.Error as exc:
                self._drop()
                raise RetryLater(f"shard leases: {exc}") from exc

    def _rebalance(self) -> frozenset[int]:
        if self._conn is None or self._conn.closed or self._conn.broken:
            self._drop()
            self._conn = self._connect()
        conn = self._conn
        row = conn.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted"
            " AND classid = %s::bigint::oid AND objsubid = 2",
            (self._ns_member,),
        ).fetchone()
        live = max(1, int(str(row[0])) if row else 1)
        fair = math.ceil(self.shards / live)
        held = set(self._held)
        for shard in sorted(held, reverse=True)[: max(0, len(held) - fair)]:
            conn.execute("SELECT pg_advisory_unlock(%s, %s)", (self._ns_shard, shard))
            held.discard(shard)
        free = [s for s in range(self.shards) if s not in held]
        random.shuffle(free)  # replicas racing for free shards spread over them
        for shard in free:
            if len(held) >= fair:
                break
            got = conn.execute("SELECT pg_try_advisory_lock(%s, %s)", (self._ns_shard, shard)).fetchone()
            if got and got[0]:
                held.add(shard)
                self.moves += 1
        if not self._leader:
            got = conn.execute("SELECT pg_try_advisory_lock(%s, %s)", (self._ns_shard, LEADER)).fetchone()
            self._leader = bool(got and got[0])
        self._held = frozenset(held)
        return self._held

    def _drop(self) -> None:
        self._held = frozenset()
        self._leader = False
        conn, self._conn = self._conn, None
        if conn is not None and not conn.closed:
            with contextlib.suppress(psycopg.Error):
                conn.close()  # closing the session releases every lock it held

    def close(self) -> None:
        with self._lock:
            self._drop()


class ShardedTargets:
    """The targets of the shards this replica holds, out of the whole fleet's `source` (the server's
    store, in PostgreSQL); annotations are the whole fleet's (a chart may show any agent)."""

    def __init__(self, source: TargetSource, leases: ShardLeases) -> None:
        self.source = source
        self.leases = leases

    def targets(self, now: float, online_within_s: float) -> list[ScrapeTarget]:
        fleet = self.source.targets(now, online_within_s)
        owned = self.leases.owned()  # after the read: the shards held now, not before a slow query
        return [t for t in fleet if shard_of(t.agent_id, self.leases.shards) in owned]

    def annotations(
        self,
        start: float,
        end: float,
        *,
        agent: str | None = None,
        group: str | None = None,
        limit: int = 500,
    ) -> list[Annotation]:
        return self.source.annotations(start, end, agent=agent, group=group, limit=limit)


class _PgSession:
    """A PostgreSQL connection of its own (autocommit), used by one thread at a time and reopened after
    an error; a failed statement is a RetryLater naming what was being done."""

    def __init__(self, database_url: str) -> None:
        self.database_url = database_url
        self._conn: psycopg.Connection[tuple[object, ...]] | None = None
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def _session(self, what: str) -> Iterator[psycopg.Connection[tuple[object, ...]]]:
        with self._lock:
            try:
                if self._conn is None or self._conn.closed or self._conn.broken:
                    self._conn = psycopg.connect(self.database_url, autocommit=True)
                yield self._conn
            except psycopg.Error as exc:
                self._conn = None
                raise RetryLater(f"{what}: {exc}") from exc

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


class PgBaselines(_PgSession):
    """Each agent's last scrape in PostgreSQL (`metric_baselines`), shared by every replica."""

    def save(self, baselines: dict[str, tuple[float, list[float]]]) -> None:
        """Upsert; an older baseline never overwrites a newer one (a slow former owner)."""
        if not baselines:
            return
        rows = [(a, ts, json.dumps(vals)) for a, (ts, vals) in baselines.items()]
        with self._session("saving baselines") as conn, conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO metric_baselines (agent, ts, vals) VALUES (%s, %s, %s)"
                " ON CONFLICT (agent) DO UPDATE SET ts = excluded.ts, vals = excluded.vals"
                " WHERE excluded.ts > metric_baselines.ts",
                rows,
            )

    def load(self, agents: Iterable[str]) -> dict[str, tuple[float, list[float]]]:
        ids = list(agents)
        if not ids:
            return {}
        with self._session("loading baselines") as conn:
            rows = conn.execute(
                "SELECT agent, ts, vals FROM metric_baselines WHERE agent = ANY(%s)", (ids,)
            ).fetchall()
        out = {}
        for agent, ts, vals in rows:
            values = json.loads(str(vals))
            # saved before a counter existed (fewer values): that agent starts without a baseline
            if isinstance(values, list) and len(values) == len(RAW_COUNTERS):
                out[str(agent)] = (float(ts), [float(v) for v in values])  # type: ignore[arg-type]
        return out


class PgFailing(_PgSession):
    """The agents whose scrapes fail, per shard, in PostgreSQL (`metric_failing`): each replica replaces
    the rows of the shards it holds; every replica reads them all, so `degraded` is the same everywhere."""

    def __init__(self, database_url: str, shards: int) -> None:
        super().__init__(database_url)
        self.shards = shards

    def publish(self, owned: frozenset[int], failing: Iterable[str]) -> None:
        rows = [(a, s) for a in failing if (s := shard_of(a, self.shards)) in owned]
        with self._session("publishing scrape health") as conn, conn.transaction(), conn.cursor() as cur:
            cur.execute("DELETE FROM metric_failing WHERE shard = ANY(%s)", (sorted(owned),))
            if rows:
                cur.executemany("INSERT INTO metric_failing (agent, shard) VALUES (%s, %s)", rows)

    def all(self) -> list[str]:
        with self._session("reading scrape health") as conn:
            rows = conn.execute("SELECT agent FROM metric_failing ORDER BY agent").fetchall()
        return [str(r[0]) for r in rows]
