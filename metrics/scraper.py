"""The scrape loop: every online agent's metrics page once per interval, spread over the interval
by a stable per-agent offset, with bounded concurrency and no pile-up (an agent whose previous
scrape is still running is skipped this round). Samples are buffered and bulk-inserted.

Scrape health (consecutive failures, last error) is kept in memory; `failing()` is what makes the
server show an agent `degraded`. A failed scrape stores nothing: the agent's values go stale.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from metrics.fetch import FetchError, Target, fetch
from metrics.parse import PageError, parse_page
from metrics.rates import increases
from metrics.settings import MetricsSettings
from metrics.store import Batch, MetricsStore
from metrics.targets import ScrapeTarget, TargetSource

if TYPE_CHECKING:
    from metrics.shards import PgBaselines, ShardLeases

log = logging.getLogger(__name__)
Clock = Callable[[], float]


@dataclass(slots=True)
class Health:
    last_attempt: float | None = None
    last_success: float | None = None
    failures: int = 0  # consecutive
    last_error: str | None = None
    duration_s: float | None = None

    def as_dict(self) -> dict[str, object]:
        return {
            "last_attempt": self.last_attempt,
            "last_success": self.last_success,
            "consecutive_failures": self.failures,
            "last_error": self.last_error,
            "duration_s": self.duration_s,
        }


def offset(agent_id: str, interval_s: float) -> float:
    """A stable offset in [0, interval): spreads the fleet's scrapes evenly, same slot every round."""
    h = int.from_bytes(hashlib.blake2b(agent_id.encode(), digest_size=8).digest(), "big")
    return (h / 2**64) * interval_s


class Scraper:
    def __init__(
        self,
        settings: MetricsSettings,
        store: MetricsStore,
        state: TargetSource,
        *,
        clock: Clock = time.time,
        monotonic: Clock = time.monotonic,
        leases: ShardLeases | None = None,
        baselines: PgBaselines | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.state = state
        self.clock = clock
        self.monotonic = monotonic
        self.health: dict[str, Health] = {}
        self.batch = Batch()
        self.scrapes_ok = 0
        self.scrapes_failed = 0
        self.skipped = 0
        # each agent's last successful scrape (ts, raw counters); survives restarts via the store, or
        # (scale-out) lives in PostgreSQL, loaded when a shard is taken over, saved after every flush
        self.leases = leases
        self.baselines = baselines
        self._prev: dict[str, tuple[float, list[float]]] = store.load_baselines() if baselines is None else {}
        self._dirty: dict[str, tuple[float, list[float]]] = {}
        self._owned: frozenset[int] = frozenset()
        self._taken_over: set[str] = set()  # agents of shards taken over this round, not yet scraped
        # scale-out: which replica scraped (an agent's operator, or a test, can tell the scrapers apart)
        self.user_agent = "ctrltower-scraper"
        if leases is not None:
            self.user_agent += f" ({socket.gethostname()}:{os.getpid()})"
        self._targets: dict[str, Target | FetchError] = {}
        self._inflight: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._sem: asyncio.Semaphore | None = None
        self._sem_loop: asyncio.AbstractEventLoop | None = None

    # --- one scrape -------------------------------------------------------------------------

    def _target(self, url: str) -> Target:
        t = self._targets.get(url)
        if t is None:
            try:
                t = Target(url, self.user_agent)
            except FetchError as exc:
                t = exc
            self._targets[url] = t
        if isinstance(t, FetchError):
            raise t
        return t

    async def scrape(self, target: ScrapeTarget) -> None:
        """Scrape one agent and buffer the sample; every failure is recorded as scrape health."""
        loop = asyncio.get_running_loop()
        if self._sem is None or self._sem_loop is not loop:  # a semaphore belongs to one event loop
            self._sem, self._sem_loop = asyncio.Semaphore(self.settings.concurrency), loop
        self._inflight.add(target.agent_id)
        health = self.health.setdefault(target.agent_id, Health())
        try:
            async with self._sem:
                ts = self.clock()
                t0 = self.monotonic()
                health.last_attempt = ts
                try:
                    body = await fetch(
                        self._target(target.url),
                        timeout_s=self.settings.timeout_s,
                        max_bytes=self.settings.max_body_bytes,
                    )
                    page = parse_page(body)
                except (FetchError, PageError) as exc:
                    health.failures += 1
                    health.last_error = str(exc)
                    health.duration_s = self.monotonic() - t0
                    self.scrapes_failed += 1
                    return
            health.duration_s = self.monotonic() - t0
            prev = self._prev.get(target.agent_id)
            dt, incs = increases(
                prev[0] if prev else None,
                prev[1] if prev else None,
                ts,
                page.counters,
                self.settings.max_gap_s,
            )
            self._prev[target.agent_id] = (ts, page.counters)
            if self.baselines is not None:
                self._dirty[target.agent_id] = (ts, page.counters)
            self.batch.add(target.agent_id, target.group, ts, dt, incs, page.memory, page.up)
            health.last_success = ts
            health.failures = 0
            health.last_error = None
            self.scrapes_ok += 1
        finally:
            self._inflight.discard(target.agent_id)

    def flush(self) -> int:
        """Bulk-insert the buffered samples now (tests, and the final flush after the loop stopped)."""
        batch, self.batch = self.batch, Batch()
        return self.store.insert(batch)

    async def flush_async(self) -> int:
        """Swap the buffer on the loop thread (where scrapes append to it), insert it in a worker
        thread, so scraping goes on during the insert and no half-added row is ever written."""
        batch, self.batch = self.batch, Batch()
        dirty, self._dirty = self._dirty, {}
        n = await asyncio.to_thread(self.store.insert, batch)
        if self.baselines is not None and dirty:
            await asyncio.to_thread(self.baselines.save, dirty)
        return n

    async def flush_loop(self, stop: asyncio.Event) -> None:
        last_rows = self.monotonic()
        while not await _wait(stop, self.settings.flush_every_s):
            try:
                # Scale-out: rows go to the lake less often (a Parquet file and a catalog commit each),
                # baselines every time, so a replica that dies leaves a baseline at most a second old.
                if self.baselines is None or self.monotonic() - last_rows >= self.settings.lake_flush_every_s:
                    last_rows = self.monotonic()
                    await self.flush_async()
                elif self._dirty:
                    dirty, self._dirty = self._dirty, {}
                    await asyncio.to_thread(self.baselines.save, dirty)
            except Exception as exc:  # disk full, ...: that batch is lost, scraping goes on
                log.warning("metrics flush failed: %s", exc)

    # --- rounds -----------------------------------------------------------------------------

    async def _take_over(self, targets: list[ScrapeTarget]) -> None:
        """Scale-out: load the shared baselines of agents in shards this replica just took over (its
        own copies of them, from an earlier ownership, are stale)."""
        if self.leases is None or self.baselines is None:
            return
        owned = self.leases.owned()
        new = owned - self._owned
        self._owned = owned
        if not new:
            return
        moved = [
            t.agent_id for t in targets if self.leases.owns(t.agent_id) and t.agent_id not in self._inflight
        ]
        moved = [a for a in moved if self._shard(a) in new]
        for agent in moved:
            self._prev.pop(agent, None)
        self._prev.update(await asyncio.to_thread(self.baselines.load, moved))
        self._taken_over = set(moved)

    def _shard(self, agent_id: str) -> int:
        from metrics.shards import shard_of

        assert self.leases is not None
        return shard_of(agent_id, self.leases.shards)

    def _spawn(self, target: ScrapeTarget) -> None:
        if self.leases is not None:
            if not self.leases.owns(target.agent_id):
                return  # its shard went to another replica during this round
            if target.agent_id in self._taken_over:
                self._taken_over.discard(target.agent_id)
                prev = self._prev.get(target.agent_id)
                if prev is not None and self.clock() - prev[0] < 0.9 * self.settings.interval_s:
                    return  # the previous owner scraped it less than an interval ago: next slot
        if target.agent_id in self._inflight:
            self.skipped += 1  # still running from the last round: never pile up
            return
        self._inflight.add(target.agent_id)
        task = asyncio.create_task(self.scrape(target))
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("scrape task failed", exc_info=task.exception())

    def _prune(self, targets: list[ScrapeTarget]) -> None:
        live = {t.agent_id for t in targets}
        for gone in [a for a in self.health if a not in live]:
            del self.health[gone]
        if len(self._targets) > 4 * len(targets) + 100:
            self._targets.clear()

    async def round(self, targets: list[ScrapeTarget] | None = None) -> None:
        """Scrape every target once, all at once (bounded by the semaphore), and wait for them."""
        if targets is None:
            targets = await asyncio.to_thread(self.state.targets, self.clock(), self.settings.online_within_s)
        self._prune(targets)
        for t in targets:
            self._spawn(t)
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def run(self, stop: asyncio.Event) -> None:
        """Scrape rounds until `stop` is set, each target at its own offset within the interval."""
        interval = self.settings.interval_s
        while not stop.is_set():
            started = self.monotonic()
            try:
                targets = await asyncio.to_thread(
                    self.state.targets, self.clock(), self.settings.online_within_s
                )
            except Exception as exc:  # the server's database busy or down: try again next round
                log.warning("reading scrape targets failed: %s", exc)
                targets = []
            self._prune(targets)
            try:
                await self._take_over(targets)
            except Exception as exc:  # baselines unreachable: those agents start without a rate
                log.warning("loading baselines of taken-over shards failed: %s", exc)
            plan = sorted(
                ((offset(t.agent_id, interval) if self.settings.jitter else 0.0), t.agent_id, t)
                for t in targets
            )
            for off, _, target in plan:
                delay = started + off - self.monotonic()
                if delay > 0.005 and await _wait(stop, delay):
                    return
                self._spawn(target)
            rest = started + interval - self.monotonic()
            if rest > 0 and await _wait(stop, rest):
                return

    async def drain(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*list(self._tasks), return_exceptions=True)

    def save_baselines(self) -> None:
        if self.baselines is not None:
            dirty, self._dirty = self._dirty, {}
            self.baselines.save(dirty)
            return
        self.store.save_baselines(dict(self._prev))

    def failing(self) -> frozenset[str]:
        """Agents whose last `failing_after` scrapes or more all failed."""
        n = self.settings.failing_after
        return frozenset(a for a, h in self.health.copy().items() if h.failures >= n)

    def last_failed(self) -> frozenset[str]:
        """Agents whose most recent scrape failed: their latest values are stale."""
        return frozenset(a for a, h in self.health.copy().items() if h.failures > 0)


async def _wait(stop: asyncio.Event, seconds: float) -> bool:
    """Sleep up to `seconds`; True when `stop` was set meanwhile."""
    try:
        await asyncio.wait_for(stop.wait(), timeout=seconds)
    except TimeoutError:
        return False
    return True
