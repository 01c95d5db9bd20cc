"""The metrics process: scraper + DuckDB writer + the internal query endpoint on a Unix socket.

`run(settings, targets)` is the body of the process `ctrltower server` starts (webui/serve.py, through
`webui.metrics.process.run`, which builds both arguments from the server's settings and store). It owns
DATA_DIR/metrics.duckdb, scrapes the online agents its `TargetSource` lists (scale-out: writes the
shared DuckLake and scrapes the agents of the shards it holds, metrics/shards.py), and answers
`GET /query`, `/latest`, `/top`, `/sums`, `/health`, `/failing`, `/stats` (JSON) on DATA_DIR/metrics.sock
for the Flask workers (client.MetricsClient). SIGTERM/SIGINT stop it cleanly (last batch flushed).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import socketserver
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from metrics import query
from metrics.params import QueryError, parse_agents, parse_range, parse_since, parse_top
from metrics.scraper import Scraper
from metrics.settings import MetricsSettings
from metrics.shards import PgBaselines, PgFailing, ShardedTargets, ShardLeases
from metrics.store import MetricsStore, StoreError
from metrics.targets import TargetSource
from schemas.errors import CtrlTowerError, RetryLater

log = logging.getLogger(__name__)


class MetricsService:
    """What the internal endpoint answers; plain method calls, so tests need no socket."""

    def __init__(
        self,
        settings: MetricsSettings,
        store: MetricsStore,
        scraper: Scraper,
        state: TargetSource,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.store = store
        self.scraper = scraper
        self.state = state
        self.clock = clock
        self.leases: ShardLeases | None = None
        self.shared_failing: PgFailing | None = None

    def handle(self, path: str, args: Mapping[str, Sequence[str]]) -> tuple[int, Any]:
        try:
            return 200, self._route(path, args)
        except QueryError as exc:
            return 404 if exc.code == "not_found" else 400, _error(exc.code, exc.message, exc.details)
        except StoreError as exc:
            log.warning("metrics query failed: %s", exc)
            return 503, _error("metrics_unavailable", str(exc))
        except CtrlTowerError as exc:
            return 503, _error("metrics_unavailable", str(exc))

    def _route(self, path: str, args: Mapping[str, Sequence[str]]) -> Any:
        now = self.clock()
        window = self.settings.stale_after_s
        if path == "/query":
            req = parse_range(args, now)
            result = query.range_query(self.store, req, now, self.settings)
            if req.scope != "fleet":
                notes = self.state.annotations(
                    req.start,
                    req.end,
                    agent=req.key if req.scope == "agent" else None,
                    group=req.key if req.scope == "group" else None,
                )
                result["annotations"] = [
                    {"agent": a.agent_id, "at": a.at, "revision": a.revision} for a in notes
                ]
            else:
                result["annotations"] = []
            return result
        if path == "/latest":
            groups = args.get("group") or []
            group = groups[0] if groups else None
            return {
                "window_s": window,
                "agents": query.latest(
                    self.store,
                    now,
                    window,
                    agents=parse_agents(args),
                    group=group,
                    failing=self.scraper.last_failed(),
                ),
            }
        if path == "/top":
            top = parse_top(args)
            items = query.top(
                self.store,
                top.metric,
                top.n,
                now,
                window,
                group=top.group,
                failing=self.scraper.last_failed(),
            )
            return {"metric": top.metric, "items": items}
        if path == "/health":
            ids = parse_agents(args)
            health = self.scraper.health.copy()
            failing = self.scraper.failing()
            keys = ids if ids is not None else sorted(health)
            return {
                "agents": {
                    a: (health[a].as_dict() | {"failing": a in failing}) if a in health else None
                    for a in keys
                }
            }
        if path == "/sums":  # a rollout's analysis: counter increases per agent since a time
            since = parse_since(args, now)
            return {
                "since": since,
                "until": now,
                "agents": query.sums(self.store, parse_agents(args) or [], since, now),
            }
        if path == "/failing":
            if self.shared_failing is not None:  # scale-out: every replica's scrapes, not only ours
                return {"agents": self.shared_failing.all()}
            return {"agents": sorted(self.scraper.failing())}
        if path == "/stats":
            leases = self.leases
            return {
                "shards": None
                if leases is None
                else {"held": sorted(leases.owned()), "leader": leases.is_leader(), "taken": leases.moves},
                "pid": os.getpid(),
                "scrapes_ok": self.scraper.scrapes_ok,
                "scrapes_failed": self.scraper.scrapes_failed,
                "skipped": self.scraper.skipped,
                "targets": len(self.scraper.health),
                "rows": self.store.counts(),
                "watermarks": {str(k): v for k, v in self.store.watermarks().items()},
            }
        raise QueryError(f"no such endpoint {path}", code="not_found")


def _error(code: str, message: str, details: Any = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details}}


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    service: MetricsService


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        try:
            status, payload = self.server.service.handle(parts.path, parse_qs(parts.query))
        except Exception:  # a bug: logged here, the client gets the JSON error shape
            log.exception("internal metrics endpoint failed on %s", self.path)
            status, payload = 500, _error("internal_error", "metrics process error (logged)")
        body = json.dumps(payload, separators=(",", ":"), allow_nan=False).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def address_string(self) -> str:
        return "unix"

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("internal: " + format, *args)


def serve_socket(path: Path, service: MetricsService) -> _Server:
    """Bind the internal endpoint (owner-only socket) and serve it from a daemon thread."""
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    old = os.umask(0o077)
    try:
        server = _Server(str(path), _Handler)
    finally:
        os.umask(old)
    server.service = service
    threading.Thread(target=server.serve_forever, name="metrics-internal", daemon=True).start()
    return server


async def _every(seconds: float, stop: asyncio.Event, fn: Callable[[], object], what: str) -> None:
    while True:
        try:
            await asyncio.wait_for(stop.wait(), timeout=seconds)
            return
        except TimeoutError:
            pass
        try:
            await asyncio.to_thread(fn)
        except Exception as exc:  # a failed flush/rollup retries next time; never kill the loop
            log.warning("%s failed: %s", what, exc)


async def run_async(
    settings: MetricsSettings,
    stop: asyncio.Event,
    targets: TargetSource,
    *,
    clock: Callable[[], float] = time.time,
) -> None:
    """The process body; also driven directly by tests with their own `stop` event. `targets` stays
    open: its owner closes it."""
    parts = open_parts(settings, targets)
    store, state, leases, baselines = parts.store, parts.state, parts.leases, parts.baselines
    scraper = Scraper(settings, store, state, clock=clock, leases=leases, baselines=baselines)
    service = MetricsService(settings, store, scraper, state, clock=clock)
    service.leases = leases
    service.shared_failing = parts.failing
    server = serve_socket(settings.socket_path, service)
    s = settings

    def leading() -> bool:  # rollups, retention and compaction: once for the whole lake
        return leases is None or leases.is_leader()

    def rollup() -> None:
        if leading():
            store.rollup(clock(), s.rollup_lag_s)

    def retain() -> None:
        if leading():
            store.retain(
                clock(), raw_s=s.raw_retention_s, minute_s=s.minute_retention_s, hour_s=s.hour_retention_s
            )
            store.compact()

    loops = [
        scraper.run(stop),
        scraper.flush_loop(stop),
        _every(s.rollup_every_s, stop, rollup, "rollup"),
        _every(s.retention_every_s, stop, retain, "retention"),
    ]
    failing = parts.failing
    if failing is not None and leases is not None:
        held = leases

        def publish_failing() -> None:
            assert failing is not None
            failing.publish(held.owned(), scraper.failing())

        loops.append(_every(s.interval_s, stop, publish_failing, "scrape health"))
    if leases is not None:
        await asyncio.to_thread(_rebalance, leases)  # hold a share before the first round
        loops.append(_every(max(0.05, s.interval_s / 2), stop, lambda: _rebalance(leases), "shard leases"))
    try:
        await asyncio.gather(*loops)
    finally:
        await scraper.drain()
        server.shutdown()
        server.server_close()
        with contextlib.suppress(Exception):
            scraper.flush()
        with contextlib.suppress(Exception):
            scraper.save_baselines()
        if leases is not None:
            leases.close()  # the shards go to the other replicas at once
        for closer in (baselines, failing):
            with contextlib.suppress(Exception):
                getattr(closer, "close", lambda: None)()
        store.close()
        with contextlib.suppress(FileNotFoundError):
            settings.socket_path.unlink()


def _rebalance(leases: ShardLeases) -> None:
    try:
        leases.rebalance()
    except RetryLater as exc:
        log.warning("%s (holding no shards until the database answers)", exc)


@dataclass
class Parts:
    store: MetricsStore
    state: TargetSource
    leases: ShardLeases | None = None
    baselines: PgBaselines | None = None
    failing: PgFailing | None = None


def open_parts(settings: MetricsSettings, targets: TargetSource) -> Parts:
    """The local DuckDB file and all of `targets`, or (scale-out) the lake, the shard leases and the
    targets of the shards held, the shared baselines and scrape health in PostgreSQL."""
    if not settings.scale_out:
        return Parts(
            MetricsStore(settings.db_path, memory_limit=settings.duckdb_memory_limit),
            targets,
        )
    import psycopg

    from metrics.lake import open_lake

    assert settings.database_url is not None and settings.lake_path is not None
    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        row = conn.execute("SELECT current_schema()").fetchone()
    schema = str(row[0]) if row and row[0] else "public"
    con = open_lake(
        settings.database_url, settings.lake_path, schema, memory_limit=settings.duckdb_memory_limit
    )
    store = _retrying(lambda: MetricsStore(settings.lake_path or "", con=con))
    leases = ShardLeases(settings.database_url, settings.shards)
    state = ShardedTargets(targets, leases)
    failing = PgFailing(settings.database_url, settings.shards)
    return Parts(store, state, leases, PgBaselines(settings.database_url), failing)


def _retrying(make: Callable[[], MetricsStore]) -> MetricsStore:
    """Replicas starting together create the lake's tables at the same moment: DuckLake lets one
    commit win and the others retry (bounded)."""
    for attempt in range(20):
        try:
            return make()
        except StoreError:
            if attempt == 19:
                raise
            time.sleep(0.05 * (attempt + 1))
    raise AssertionError("unreachable")


def run(settings: MetricsSettings, targets: TargetSource) -> None:
    """The metrics process until SIGTERM (or SIGINT, unless ignored): the server's child process runs it
    through `webui.metrics.process.run`, which passes the settings derived from the server's and a
    `TargetSource` over the server's store."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s metrics %(levelname)s %(message)s")

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:  # the server's launcher ignores it
            loop.add_signal_handler(signal.SIGINT, stop.set)
        await run_async(settings, stop, targets)

    asyncio.run(main())
