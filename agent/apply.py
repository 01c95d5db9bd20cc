"""Applying a config: stage, validate with the real collector, swap atomically, reload, confirm health,
and on any failure put the last good config back and make sure the collector runs it."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from agent.client import MetricsScraper
from agent.collector_metrics import CollectorPage, parse_page
from agent.state import StoredConfig
from agent.supervisor import CollectorProcess, validate
from fsio.atomic import atomic_write, create_private, fsync_dir

log = logging.getLogger("ctrltower.agent")
# logged at info level by every (re)started collector service
READY_LINE = "Everything is ready. Begin running and processing data."


@dataclass(frozen=True)
class ApplyOutcome:
    ok: bool
    error: str | None = None


class Applier:
    """Owns the config file at PATH and the collector's (re)starts that follow a change of it."""

    def __init__(
        self,
        collector: CollectorProcess,
        scraper: MetricsScraper,
        *,
        health_timeout_s: float,
        health_settle_s: float,
        on_page: Callable[[CollectorPage], None] = lambda page: None,
    ) -> None:
        self.collector = collector
        self.scraper = scraper
        self.health_timeout_s = health_timeout_s
        self.health_settle_s = health_settle_s
        self.on_page = on_page

    @property
    def path(self) -> Path:
        return self.collector.config_path

    def read_local(self) -> bytes | None:
        try:
            return self.path.read_bytes()
        except FileNotFoundError:
            return None

    def write(self, data: bytes) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(self.path, data)

    def sample(self) -> CollectorPage | None:
        text = self.scraper.scrape(timeout=1.0)
        if text is None:
            return None
        page = parse_page(text)
        self.on_page(page)
        return page

    def wait_healthy(self, previous_instance: str | None, log_mark: int) -> str | None:
        """None once the collector is alive, answers on its metrics port from a new service instance
        (after a reload) and has stayed up for the settle time; else why not."""
        started = time.monotonic()
        deadline = started + self.health_timeout_s
        while True:
            if not self.collector.alive():
                code = self.collector.exit_code()
                tail = self.collector.log_since(log_mark)
                return f"collector exited with code {code}: {tail}".strip()
            page = self.sample()
            fresh = page is not None and (
                previous_instance is None
                or page.instance_id != previous_instance
                # a config may pin service.instance.id: then the collector's own log tells
                or READY_LINE in self.collector.log_since(log_mark, limit=1 << 20)
            )
            if fresh and time.monotonic() - started >= self.health_settle_s:
                if self.collector.alive():
                    return None
                continue
            if time.monotonic() >= deadline:
                if page is None:
                    return (
                        f"collector internal metrics did not answer at {self.scraper.url} within "
                        f"{self.health_timeout_s:g}s (is service.telemetry.metrics on "
                        "${env:CTRLTOWER_TELEMETRY_PORT}?)"
                    )
                return f"collector did not reload within {self.health_timeout_s:g}s"
            time.sleep(0.1)

    def run(self, reload: bool = True) -> str | None:
        """Make the collector run what is at PATH now: reload it if running (and `reload`), else start it.
        Returns None when healthy, else the reason."""
        mark = self.collector.log_mark()
        previous: str | None = None
        if self.collector.alive():
            if not reload:
                return None
            page = self.sample()  # count what the old instance did, and learn its instance id
            if page is None:
                # Not serving yet (just started) or wedged: a SIGHUP that arrives before the collector
                # installs its handler kills it, so start it afresh instead.
                self.collector.stop(timeout=10)
                self.collector.start()
            else:
                previous = page.instance_id
                self.collector.reload()
        else:
            self.collector.forget()
            self.collector.start()
        return self.wait_healthy(previous, mark)

    def apply(
        self,
        new: StoredConfig,
        last_good: StoredConfig | None,
        should_run: bool,
        binary: Path | None = None,
    ) -> ApplyOutcome:
        """Apply `new`; with `binary` (an upgrade), validate it with that binary and switch both together:
        stop, swap binary and config, start, wait healthy; on failure the previous binary runs the last
        good config again."""
        staging = self.path.with_name(f".{self.path.name}.staging")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = create_private(staging)  # 0600, and never through a symlink someone put there
        except OSError as exc:
            log.error("cannot stage config %s: %s", new.hash[:12], exc)
            return ApplyOutcome(False, f"cannot stage the config: {exc}")
        with os.fdopen(fd, "wb") as f:
            f.write(new.data)
            f.flush()
            os.fsync(f.fileno())
        previous = self.collector.binary
        error = validate(binary or previous, staging, self.collector.env)
        if error is not None:
            staging.unlink(missing_ok=True)
            log.warning("config %s rejected by the collector: %s", new.hash[:12], error)
            return ApplyOutcome(False, f"collector validate failed: {error}")
        swap = binary is not None and binary != previous
        if swap:  # a new binary cannot be reloaded into: stop the old one, start the new one
            self.collector.stop(timeout=10)
            self.collector.binary = binary  # type: ignore[assignment]
        os.replace(staging, self.path)
        fsync_dir(self.path.parent)
        if not should_run:
            return ApplyOutcome(True)
        problem = self.run()
        if problem is None:
            return ApplyOutcome(True)
        log.warning("config %s unhealthy, rolling back: %s", new.hash[:12], problem)
        if swap:
            self.collector.stop(timeout=10)
            self.collector.binary = previous
        self.rollback(last_good)
        return ApplyOutcome(False, problem)

    def rollback(self, last_good: StoredConfig | None) -> None:
        if last_good is None:
            # Nothing ever ran healthily: stop rather than run a config known to fail.
            self.collector.stop(timeout=10)
            self.path.unlink(missing_ok=True)
            return
        self.write(last_good.data)
        problem = self.run()
        if problem is not None:
            # Supervision keeps restarting it with backoff; report what we saw.
            log.error("last good config %s is not healthy either: %s", last_good.hash[:12], problem)
