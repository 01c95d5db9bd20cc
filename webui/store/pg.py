"""The PostgreSQL backend of the store (`ctrltower server --database-url postgresql://...`).

Same interface as the SQLite `Database` (webui/store/db.py), so the mixins run one SQL text on both:
statements are written with `?` / `:name` placeholders and rewritten here for psycopg (`%s` /
`%(name)s`, once per statement text); rows index by position and by column name, like `sqlite3.Row`.
Connections come from a psycopg_pool pool per process, in autocommit mode: `conn()` runs one statement,
`write()` one READ COMMITTED transaction (writers that must not interleave take `lock()`, a transaction
advisory lock), `read()` one REPEATABLE READ snapshot. Results are fetched before the connection goes
back to the pool: every query here is bounded (pages, one agent, one revision).

Migrations run under an advisory lock, so replicas starting at the same moment migrate once.

Change notifications: a write that bumps the change counters (`StoreBase._bump`) also NOTIFYs the
channel `ctrltower_changes_<schema>` (delivered at commit); `ChangeListener` LISTENs on its own
connection, so each worker's config cache learns of a publish at once instead of asking the database
on every poll.
"""

from __future__ import annotations

import functools
import logging
import re
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg import errors as pg_errors
from psycopg import sql as pg_sql
from psycopg.rows import RowMaker
from psycopg_pool import ConnectionPool

from schemas.errors import Permanent, RetryLater
from webui.store.dialect import POSTGRES, Dialect

log = logging.getLogger(__name__)

# Errors worth a retry (503 + Retry-After): the server is down or restarting, the pool is exhausted,
# or PostgreSQL chose this transaction as a deadlock / serialization victim.
_TRANSIENT = (
    psycopg.OperationalError,
    pg_errors.SerializationFailure,
    pg_errors.DeadlockDetected,
    pg_errors.LockNotAvailable,
)


class PgRow(tuple[Any, ...]):
    """A row readable as `row[0]` and as `row["column"]` (what the store expects of sqlite3.Row)."""

    _index: dict[str, int]

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            return tuple.__getitem__(self, self._index[key])
        return tuple.__getitem__(self, key)

    def keys(self) -> list[str]:
        return list(self._index)


def _row_factory(cursor: psycopg.Cursor[Any]) -> RowMaker[PgRow]:
    names = [c.name for c in cursor.description or ()]
    index: dict[str, int] = {}
    for i, name in enumerate(names):
        index.setdefault(name, i)  # a repeated name reads the first column, as sqlite3.Row does

    def make(values: Sequence[Any]) -> PgRow:
        row = PgRow(values)
        row._index = index
        return row

    return make


# A transaction advisory lock named by (schema, name): 64-bit key from PostgreSQL's own string hash.
_LOCK_SQL = "SELECT pg_advisory_xact_lock(hashtextextended(current_schema() || ':' || ?, 0))"

_TOKENS = re.compile(r"'(?:[^']|'')*'|\"[^\"]*\"|--[^\n]*|::|:[A-Za-z_][A-Za-z0-9_]*|\?|%")


@functools.lru_cache(maxsize=4096)
def to_psycopg(sql: str) -> str:
    """Rewrite `?` and `:name` placeholders as psycopg's, and `%` as `%%`; leave strings, quoted names,
    comments and `::` casts alone."""

    def sub(m: re.Match[str]) -> str:
        tok = m.group(0)
        if tok == "?":
            return "%s"
        if tok == "%":
            return "%%"
        if tok.startswith(":") and tok != "::":
            return f"%({tok[1:]})s"
        return tok

    return _TOKENS.sub(sub, sql)


class PgResult:
    """A statement's rows (fetched) and row count: the part of a DB-API cursor the store uses."""

    __slots__ = ("_pos", "rowcount", "rows")

    def __init__(self, rows: list[Any], rowcount: int) -> None:
        self.rows = rows
        self.rowcount = rowcount
        self._pos = 0

    def fetchone(self) -> Any:
        if self._pos >= len(self.rows):
            return None
        self._pos += 1
        return self.rows[self._pos - 1]

    def fetchall(self) -> list[Any]:
        rest = self.rows[self._pos :]
        self._pos = len(self.rows)
        return rest

    def __iter__(self) -> Iterator[Any]:
        return iter(self.fetchall())


def _params(parameters: Any) -> Any:
    return () if parameters is None else parameters


class PgConn:
    """One pooled connection, for the length of a transaction."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self._conn = conn
        self.changed = False  # this transaction moved the change counters (notify_change)

    def execute(self, sql: str, parameters: Any = None, /) -> PgResult:
        with _translate_errors(), self._conn.cursor() as cur:
            cur.execute(to_psycopg(sql), _params(parameters))
            rows = cur.fetchall() if cur.description is not None else []
            return PgResult(rows, cur.rowcount)

    def executemany(self, sql: str, parameters: Any, /) -> PgResult:
        seq = list(parameters)
        if not seq:
            return PgResult([], 0)
        with _translate_errors(), self._conn.cursor() as cur:
            cur.executemany(to_psycopg(sql), seq)
            return PgResult([], cur.rowcount)


class _AutoConn:
    """`StateDB.conn()` on PostgreSQL: each statement borrows a pooled connection (autocommit)."""

    def __init__(self, db: PgDatabase) -> None:
        self._db = db

    def execute(self, sql: str, parameters: Any = None, /) -> PgResult:
        with self._db._borrow() as conn:
            return PgConn(conn).execute(sql, parameters)

    def executemany(self, sql: str, parameters: Any, /) -> PgResult:
        with self._db._borrow() as conn:
            return PgConn(conn).executemany(sql, parameters)


@contextmanager
def _translate_errors() -> Iterator[None]:
    try:
        yield
    except _TRANSIENT as exc:
        raise RetryLater(f"database unavailable: {exc}") from exc


class PgDatabase:
    """The store's PostgreSQL database: a connection pool for this process."""

    dialect: Dialect = POSTGRES

    def __init__(self, url: str, *, min_size: int = 1, max_size: int = 8, timeout_s: float = 10.0) -> None:
        self.url = url
        self._pool = ConnectionPool(
            url,
            min_size=min_size,
            max_size=max_size,
            timeout=timeout_s,
            kwargs={"autocommit": True, "row_factory": _row_factory},
            name="ctrltower",
            open=True,
        )
        self._schema: str | None = None
        self._listeners: list[ChangeListener] = []

    @contextmanager
    def _borrow(self) -> Iterator[psycopg.Connection[Any]]:
        with _translate_errors(), self._pool.connection() as conn:
            yield conn

    def conn(self) -> _AutoConn:
        return _AutoConn(self)

    @contextmanager
    def _transaction(self, begin: str) -> Iterator[PgConn]:
        with self._borrow() as raw:
            with _translate_errors():
                raw.execute(begin)
            conn = PgConn(raw)
            try:
                yield conn
            except BaseException:
                if not raw.closed and not raw.broken:
                    raw.execute("ROLLBACK")
                raise
            else:
                with _translate_errors():
                    raw.execute("COMMIT")
        if conn.changed:
            # This process reads its own writes at once (the notification reaches the others in ms).
            for listener in self._listeners:
                listener.call()

    def write(self) -> Any:
        """A READ COMMITTED write transaction: all or nothing."""
        return self._transaction("BEGIN")

    def read(self) -> Any:
        """A consistent snapshot for multi-statement reads."""
        return self._transaction("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")

    def lock(self, conn: Any, name: str) -> None:
        """Serialize this kind of writer until the transaction ends (across processes and replicas).

        The key includes the schema, so several ctrltower databases (or test schemas) in one
        PostgreSQL database never wait on each other.
        """
        conn.execute(_LOCK_SQL, (name,))

    def notify_change(self, conn: Any) -> None:
        """Tell every replica's listeners that the change counters moved (sent when the transaction
        commits; several in one transaction arrive as one)."""
        conn.execute("SELECT pg_notify(? || current_schema(), '')", (CHANNEL_PREFIX,))
        if isinstance(conn, PgConn):
            conn.changed = True

    def schema(self) -> str:
        if self._schema is None:
            row = self.conn().execute("SELECT current_schema()").fetchone()
            self._schema = str(row[0])
        return self._schema

    def listen(self, on_change: Callable[[], None], *, fallback_s: float) -> None:
        """Call `on_change()` (on a thread of its own) after every notification, after (re)connecting,
        and at least every `fallback_s` seconds; until close()."""
        listener = ChangeListener(self.url, CHANNEL_PREFIX + self.schema(), on_change, fallback_s)
        self._listeners.append(listener)
        listener.start()

    def close(self) -> None:
        for listener in self._listeners:
            listener.stop()
        self._listeners.clear()
        self._pool.close()


CHANNEL_PREFIX = "ctrltower_changes_"


class ChangeListener(threading.Thread):
    """LISTEN on a dedicated connection; reconnect with backoff if it drops (a missed notification is
    covered by the call after reconnecting and by the fallback timer)."""

    def __init__(self, url: str, channel: str, on_change: Callable[[], None], fallback_s: float) -> None:
        super().__init__(name="ctrltower-listen", daemon=True)
        self.url = url
        self.channel = channel
        self.on_change = on_change
        self.fallback_s = fallback_s
        self._halt = threading.Event()

    def stop(self) -> None:
        self._halt.set()
        self.join(5)

    def call(self) -> None:
        try:
            self.on_change()
        except Exception as exc:  # the database blinked: the next notification or timer tries again
            log.warning("change listener callback failed: %s", exc)

    def run(self) -> None:
        backoff = 0.2
        while not self._halt.is_set():
            try:
                with psycopg.connect(self.url, autocommit=True) as conn:
                    conn.execute(pg_sql.SQL("LISTEN {}").format(pg_sql.Identifier(self.channel)))
                    backoff = 0.2
                    self.call()  # whatever changed before LISTEN took effect
                    waited = 0.0
                    while not self._halt.is_set():
                        # Wake up at least every 0.5 s so stop() is prompt.
                        got = list(conn.notifies(timeout=min(0.5, self.fallback_s), stop_after=1))
                        waited += 0.5
                        if got or waited >= self.fallback_s:
                            self.call()
                            waited = 0.0
            except psycopg.Error as exc:
                if self._halt.is_set():
                    return
                log.warning("change listener lost its connection (%s); reconnecting", exc)
                self._halt.wait(backoff)
                backoff = min(backoff * 2, 5.0)


def migrate_pg(url: str, migrations: Sequence[str]) -> int:
    """Bring the database to the latest version, once, however many replicas start at the same time.

    One transaction under an advisory lock: the first replica migrates, the others wait on the lock and
    then find nothing to do. PostgreSQL's DDL is transactional, so a crash half-way leaves no half schema.
    """
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            schema = conn.execute("SELECT current_schema()").fetchone()
            if schema is None or schema[0] is None:
                raise Permanent(f"{_redact(url)}: no schema to create tables in (check search_path)")
            conn.execute("BEGIN")
            try:
                conn.execute(to_psycopg(_LOCK_SQL), ("migrate",))
                conn.execute(
                    "CREATE TABLE IF NOT EXISTS schema_version"
                    " (id INT PRIMARY KEY CHECK (id = 1), version INT NOT NULL)"
                )
                row = conn.execute("SELECT version FROM schema_version WHERE id = 1").fetchone()
                version = 0 if row is None else int(row[0])
                if version > len(migrations):
                    raise Permanent(
                        f"the database has schema version {version},"
                        f" newer than this server ({len(migrations)})"
                    )
                for number in range(version, len(migrations)):
                    conn.execute(POSTGRES.ddl(migrations[number]).encode())  # bytes: no placeholder parsing
                if version < len(migrations):
                    conn.execute(
                        "INSERT INTO schema_version (id, version) VALUES (1, %s)"
                        " ON CONFLICT (id) DO UPDATE SET version = excluded.version",
                        (len(migrations),),
                    )
                    log.info("database migrated from version %d to %d", version, len(migrations))
                conn.execute("COMMIT")
            except BaseException:
                if not conn.closed and not conn.broken:
                    conn.execute("ROLLBACK")
                raise
    except psycopg.OperationalError as exc:
        raise RetryLater(f"cannot reach the database {_redact(url)}: {exc}") from exc
    except psycopg.Error as exc:
        raise Permanent(f"migrating {_redact(url)} failed: {exc}") from exc
    return len(migrations)


def _redact(url: str) -> str:
    """The URL without its password, for messages."""
    return re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", url)
