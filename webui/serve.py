"""The `ctrltower server` process launcher: prepare the data dir, run granian workers and the metrics process.

Process tree:
- this (main) process: migrates the database, writes the bootstrap tokens on first start, starts the
  metrics process (`webui.metrics.process.run(settings)`: the metrics package's `metrics.service.run`
  with settings derived from the server's and scrape targets read through the server's store) and the
  rollout controller's process (`webui.rollouts.controller:run`, working while it holds the `rollouts` lease,
  docs/rollouts.md), both spawned (never forked) and restarted if they die, and runs granian's
  supervisor, which forks the WSGI worker processes (each builds its own app with `create_app`);
- on SIGTERM/SIGINT granian stops its workers, then this process stops the other two.

Why granian: measured on this machine at project setup, ~16k req/s for a trivial route against ~5.5k for
gunicorn (sync workers); see docs/benchmarks.md for the config-poll benchmark.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import multiprocessing
import os
import signal
import sqlite3
import threading
import time
from collections.abc import Callable
from multiprocessing import resource_tracker
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

from fsio.atomic import atomic_write
from schemas.errors import CtrlTowerError, Permanent
from webui.lifecycle import (
    METRICS_LOCK,
    SERVER_LOCK,
    LockHeld,
    PidLock,
    ReadyAnnouncer,
    clear_ready,
    die_with_parent,
    mark_worker_ready,
    url_for,
)
from webui.settings import ServerSettings
from webui.store import Store

log = logging.getLogger("ctrltower.server")


class ServeError(Permanent):
    """The server cannot start (data dir unusable, port taken, ...)."""


def write_secret_file(path: Path, secret: str) -> None:
    """Write a 0600 file atomically (fsio.atomic): never a half-written token."""
    atomic_write(path, (secret + "\n").encode())


def prepare(settings: ServerSettings) -> dict[str, Path]:
    """Create the data dir, migrate state.db, and on first start write admin.token and enroll.token.

    A fresh database with token files from an earlier one re-imports those secrets (state.db is a cache:
    deleting it must not lock agents out). Returns the token files written now.
    """
    try:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(settings.data_dir, 0o700)
        store = Store.from_settings(settings)
    except OSError as exc:
        raise ServeError(f"data dir {settings.data_dir} is not usable: {exc}") from exc
    except sqlite3.Error as exc:  # not a database, or a damaged one
        raise ServeError(f"{settings.db_path} is not usable: {exc}") from exc
    except CtrlTowerError as exc:  # PostgreSQL unreachable or refusing (the URL's password is redacted)
        raise ServeError(f"the database is not usable: {exc}") from exc
    paths = {"admin": settings.admin_token_path, "enroll": settings.enroll_token_path}
    existing = {}
    for role, path in paths.items():
        with contextlib.suppress(FileNotFoundError, UnicodeDecodeError):
            existing[role] = path.read_text().strip()
    try:
        secrets = store.ensure_bootstrap_tokens(existing)
    finally:
        store.close()
    written: dict[str, Path] = {}
    for role, path in paths.items():
        if role in secrets and existing.get(role) != secrets[role]:
            write_secret_file(path, secrets[role])
            written[role] = path
    return written


def load_app(settings_json: str, main_pid: int, _target: str) -> Any:
    """Granian's target loader, run in each worker process: build the app from the settings."""
    from webui.app import create_app

    die_with_parent(main_pid)  # a worker never outlives the main process (SIGKILL included)
    settings = ServerSettings.model_validate_json(settings_json)
    app = create_app(settings)
    mark_worker_ready(settings.data_dir)  # the main process announces readiness on the first marker
    return app


def _metrics_main(settings_json: str, parent_pid: int) -> None:
    """Entry of the metrics child process: the metrics part, wired to the server's settings and store
    by webui/metrics/process.py."""
    # Imported here, not at the top: the main process (which forks the WSGI workers) never loads
    # DuckDB; only this spawned child does.
    from webui.metrics.process import run as run_metrics

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when we stop (SIGTERM)
    die_with_parent(parent_pid)  # SIGTERM (a clean flush) when the server dies, even by SIGKILL
    settings = ServerSettings.model_validate_json(settings_json)
    try:
        lock = PidLock(settings.data_dir / METRICS_LOCK).acquire()
    except LockHeld as exc:  # the server checked at start: only a race gets here
        log.error("another metrics process (pid %s) owns %s: exiting", exc.pid, settings.data_dir)
        raise SystemExit(1) from None
    try:
        run_metrics(settings)
    finally:
        lock.release()


class MetricsSupervisor:
    """Runs the metrics process and restarts it (with backoff) if it dies, until stopped."""

    def __init__(
        self,
        settings: ServerSettings,
        target: Callable[[str, int], None] = _metrics_main,
        name: str = "metrics",
    ) -> None:
        self.settings = settings
        self.target = target
        self.name = name  # also supervises the rollout controller's process (name="rollouts")
        self._stop = threading.Event()
        self._proc: BaseProcess | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._spawn()
        self._thread = threading.Thread(target=self._watch, name=f"{self.name}-supervisor", daemon=True)
        self._thread.start()

    def _spawn(self) -> None:
        ctx = multiprocessing.get_context("spawn")  # a fresh interpreter: no inherited sockets or locks
        proc = ctx.Process(
            target=self.target,
            args=(self.settings.model_dump_json(), os.getpid()),
            name=f"ctrltower-{self.name}",
            daemon=False,
        )
        proc.start()
        self._proc = proc
        log.info("%s process started (pid %s)", self.name, proc.pid)

    def _watch(self) -> None:
        backoff = 1.0
        while not self._stop.wait(0.5):
            proc = self._proc
            if proc is not None and not proc.is_alive() and not self._stop.is_set():
                log.error(
                    "%s process exited (code %s); restarting in %.0f s", self.name, proc.exitcode, backoff
                )
                if self._stop.wait(backoff):
                    return
                backoff = min(backoff * 2, 30.0)
                self._spawn()

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
        proc = self._proc
        if proc is None or not proc.is_alive():
            return
        proc.terminate()
        proc.join(timeout_s)
        if proc.is_alive():
            log.warning("%s process did not stop in %.0f s; killing it", self.name, timeout_s)
            proc.kill()
            proc.join(5)


class Maintenance:
    """Hourly retention in the main process (one place, not once per worker)."""

    def __init__(self, settings: ServerSettings, every_s: float = 3600.0) -> None:
        self.settings = settings
        self.every_s = every_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="maintenance", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def run_once(self) -> dict[str, int]:
        store = Store.from_settings(self.settings)
        try:
            keep = self.settings.retention_days * 86400
            return store.prune(events_older_than_s=keep, runs_older_than_s=keep)
        finally:
            store.close()

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            try:
                removed = self.run_once()
                log.info("retention removed %s", removed)
            except Exception as exc:  # never take the server down for housekeeping; try next hour
                log.warning("retention failed: %s", exc)

    def stop(self) -> None:
        self._stop.set()


def _rollouts_main(settings_json: str, parent_pid: int) -> None:
    """Entry of the rollout controller's child process (webui/rollouts/controller.py).

    A process of its own, not a thread here: granian forks its workers from this process, and a fork
    while a thread is inside SQLite could leave a worker holding a lock nobody will release."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when we stop (SIGTERM)
    die_with_parent(parent_pid)
    from webui.rollouts.controller import run

    run(ServerSettings.model_validate_json(settings_json))


def claim_data_dir(settings: ServerSettings) -> PidLock:
    """Lock the data dir for this server, or say clearly who still uses it (ServeError, exit 5).

    Held until this process and its forked workers exit. The metrics lock is only checked here: the
    metrics process takes it itself.
    """
    try:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        lock = PidLock(settings.data_dir / SERVER_LOCK).acquire()
    except OSError as exc:
        raise ServeError(f"data dir {settings.data_dir} is not usable: {exc}") from exc
    except LockHeld as exc:
        raise ServeError(
            f"another ctrltower server (pid {exc.pid}), or a worker process it left behind, is still "
            f"running on {settings.data_dir}: stop it first"
        ) from None
    try:
        PidLock(settings.data_dir / METRICS_LOCK).check_free()
    except LockHeld as exc:
        lock.release()
        raise ServeError(
            f"the metrics process of an earlier server (pid {exc.pid}) is still running on "
            f"{settings.data_dir} and owns metrics.duckdb: stop it (kill {exc.pid}) and start again"
        ) from None
    except OSError as exc:
        lock.release()
        raise ServeError(f"data dir {settings.data_dir} is not usable: {exc}") from exc
    return lock


def serve(settings: ServerSettings) -> int:
    """Run the server until SIGTERM/SIGINT. Returns the process exit code."""
    from granian import Granian
    from granian.constants import Interfaces

    data_lock = claim_data_dir(settings)  # also dropped by the kernel if we are killed
    written = prepare(settings)
    clear_ready(settings.data_dir)
    for role, path in written.items():
        log.warning("first start: wrote the %s token to %s (mode 0600)", role, path)
    supervisor: MetricsSupervisor | None = None
    if settings.metrics:
        supervisor = MetricsSupervisor(settings)
        supervisor.start()
    maintenance = Maintenance(settings)
    maintenance.start()
    rollouts = MetricsSupervisor(settings, target=_rollouts_main, name="rollouts")
    rollouts.start()
    server = Granian(
        "webui.app:create_app",  # informative only: load_app builds the app
        address=settings.host,
        port=settings.port,
        interface=Interfaces.WSGI,
        workers=settings.workers,
        blocking_threads=settings.threads,
        backlog=2048,
        log_access=False,
        websockets=False,
        workers_kill_timeout=5,  # requests are short; a worker that hangs on shutdown is killed
        respawn_failed_workers=True,  # a worker that dies (OOM, bug) is replaced; a crash loop still stops
    )
    started = time.monotonic()
    announcer = ReadyAnnouncer(settings.data_dir, url_for(settings.host, settings.port))
    announcer.start()
    log.info("serving on http://%s:%s with %d workers", settings.host, settings.port, settings.workers)
    try:
        server.serve(target_loader=functools.partial(load_app, settings.model_dump_json(), os.getpid()))
    finally:
        announcer.stop()
        rollouts.stop()
        maintenance.stop()
        if supervisor is not None:
            supervisor.stop()
        data_lock.release()
        # The spawned children started multiprocessing's resource tracker; it would outlive this
        # process by a moment (it exits when it notices we are gone): stop it now, children first.
        with contextlib.suppress(Exception):
            resource_tracker._resource_tracker._stop()  # type: ignore[attr-defined]  # not in typeshed
        log.info("server stopped after %.1f s", time.monotonic() - started)
    return 0
