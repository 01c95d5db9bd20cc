"""Run the REAL ctrltower server in tests, as a subprocess or in-process.

Subprocess (the real thing: `ctrltower server` under granian, on 127.0.0.1 and a free port)::

    from tests.support.server import ServerProcess

    def test_x(tmp_path):
        with ServerProcess(tmp_path / "srv", poll_interval_s=0.5) as srv:
            srv.base_url                      # "http://127.0.0.1:PORT"
            srv.admin_token, srv.enroll_token # read from DATA_DIR/admin.token, enroll.token
            tok = srv.create_token("reconciler")  # any role: viewer operator admin reconciler enroll
            with srv.client(tok) as c:        # httpx.Client with base_url and the bearer header
                c.get("/api/v1/revisions")
            srv.kill()                        # SIGKILL the whole process group (workers too)
            srv.start()                       # start again on the same data dir and port
        # leaving the block stops it with SIGTERM (SIGKILL after a timeout)

Or as a pytest fixture: `from tests.support.server import live_server  # noqa: F401` in your conftest.py
(function-scoped; poll interval 0.5 s, no metrics process). Options: `metrics=True` also starts the
metrics process (if metrics.service exists; `metrics_interval_s` sets its scrape interval),
`workers`, `threads`, `extra_args`.
`srv.log_text()` returns the server's output (stdout+stderr) for assertion messages.

In-process (fast API tests, no sockets: Flask's test client on `create_app`)::

    from tests.support.server import InProcessServer

    srv = InProcessServer(tmp_path, poll_interval_s=1.0)   # ui/metrics blueprints off by default
    r = srv.client.get("/api/v1/agents", headers=srv.auth(srv.admin_token))
    srv.store                                               # the webui.store.Store behind the app
    srv.create_token("operator")

A test `clock` can be injected in-process: `InProcessServer(tmp_path, clock=lambda: now[0])`.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
import pytest

from tests.conftest import ROOT, free_port
from tests.support.ready import NotReady, wait_ready


class ServerProcess:
    """`ctrltower server --data-dir DIR --listen 127.0.0.1:PORT` as a subprocess in its own session."""

    def __init__(
        self,
        data_dir: Path,
        *,
        port: int | None = None,
        poll_interval_s: float = 0.5,
        workers: int = 1,
        threads: int = 4,
        metrics: bool = False,
        metrics_interval_s: float | None = None,
        extra_args: tuple[str, ...] = (),
        env: dict[str, str] | None = None,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.port = port or free_port()
        self.poll_interval_s = poll_interval_s
        self.workers = workers
        self.threads = threads
        self.metrics = metrics
        self.metrics_interval_s = metrics_interval_s
        self.extra_args = extra_args
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = self.data_dir.parent / f"{self.data_dir.name}-server.log"

    # --- lifecycle ---------------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        cmd = [
            sys.executable, "-m", "ctrltower", "server",
            "--data-dir", str(self.data_dir),
            "--listen", f"127.0.0.1:{self.port}",
            "--workers", str(self.workers),
            "--threads", str(self.threads),
            "--poll-interval", str(self.poll_interval_s),
            "--log-level", "warning",
        ]  # fmt: skip
        if not self.metrics:
            cmd.append("--no-metrics")
        elif self.metrics_interval_s is not None:
            cmd += ["--metrics-interval", str(self.metrics_interval_s)]
        return cmd + list(self.extra_args)

    def start(self) -> ServerProcess:
        """Start (or restart after stop/kill) and wait until the server reports ready (or exits).

        Ready = the server wrote DATA_DIR/server.ready with its own pid (it does once a worker can
        answer). No fixed timeout: only tests.support.ready's safety cap.
        """
        if self.proc is not None and self.proc.poll() is None:
            raise RuntimeError("server already running")
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **(self.env or {})}
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                self.command(),
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        try:
            wait_ready(self.proc, self._reported_ready, "ctrltower server", self.log_text)
        except NotReady:
            self.kill()
            raise
        return self

    def _reported_ready(self) -> bool:
        proc = self.proc
        try:
            report = json.loads((self.data_dir / "server.ready").read_text())
        except (OSError, ValueError):
            return False  # not written yet (or being replaced)
        return proc is not None and report.get("pid") == proc.pid

    def wait_metrics(self) -> Path:
        """Wait until the metrics process listens on DATA_DIR/metrics.sock (it binds it once ready)."""
        assert self.metrics and self.proc is not None, "started without metrics"
        sock = self.data_dir / "metrics.sock"
        found = wait_ready(self.proc, lambda: sock if sock.exists() else None, "metrics", self.log_text)
        return found

    def stop(self, timeout_s: float = 15.0) -> int | None:
        """SIGTERM and wait (SIGKILL the group after timeout_s). Returns the exit code."""
        proc = self.proc
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.kill()
        return proc.returncode

    def kill(self) -> None:
        """SIGKILL the server and all its children (workers, metrics process) at once."""
        proc = self.proc
        if proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)

    def _reap_group(self) -> None:
        # Children left behind after the leader exited (should not happen: a test may assert on it).
        proc = self.proc
        if proc is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)

    def group_alive(self) -> bool:
        """True if any process of the server's session is still alive."""
        if self.proc is None:
            return False
        try:
            os.killpg(self.proc.pid, 0)
        except ProcessLookupError:
            return False
        return True

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
        self._reap_group()

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-20000:]
        except FileNotFoundError:
            return ""

    # --- tokens and clients ----------------------------------------------------------------------

    @property
    def admin_token(self) -> str:
        return (self.data_dir / "admin.token").read_text().strip()

    @property
    def enroll_token(self) -> str:
        return (self.data_dir / "enroll.token").read_text().strip()

    def create_token(self, role: str, name: str = "") -> str:
        """A new token of `role` (via the API, as admin); returns its secret."""
        r = httpx.post(
            self.base_url + "/api/v1/tokens",
            json={"role": role, "name": name or f"test-{role}"},
            headers=auth(self.admin_token),
            timeout=10,
        )
        r.raise_for_status()
        return str(r.json()["secret"])

    def client(self, token: str | None = None, timeout_s: float = 10.0) -> httpx.Client:
        return httpx.Client(base_url=self.base_url, headers=auth(token) if token else {}, timeout=timeout_s)


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def live_server(tmp_path: Path) -> Iterator[ServerProcess]:
    """A real server on a free port, poll interval 0.5 s, stopped after the test."""
    srv = ServerProcess(tmp_path / "server")
    with srv:
        yield srv


class InProcessServer:
    """The app from `create_app` with Flask's test client: no sockets, no granian, fast."""

    def __init__(
        self,
        data_dir: Path,
        *,
        poll_interval_s: float = 1.0,
        clock: Callable[[], float] | None = None,
        scrape_failing: Callable[[], Any] | None = None,
        ui: bool = False,
        metrics: bool = False,
        **settings: Any,
    ) -> None:
        from webui.app import create_app
        from webui.context import get_store
        from webui.settings import ServerSettings

        self.settings = ServerSettings(
            data_dir=Path(data_dir), poll_interval_s=poll_interval_s, ui=ui, metrics=metrics, **settings
        )
        self.app = create_app(self.settings, clock=clock, scrape_failing=scrape_failing)
        with self.app.app_context():
            self.store = get_store()
        tokens = self.store.ensure_bootstrap_tokens()
        self.admin_token = tokens.get("admin") or self.create_token("admin")
        self.enroll_token = tokens.get("enroll") or self.create_token("enroll")
        self.client = self.app.test_client()

    def create_token(self, role: str, name: str = "") -> str:
        return self.store.create_token(role, name or f"test-{role}").secret  # type: ignore[arg-type]

    @staticmethod
    def auth(token: str) -> dict[str, str]:
        return auth(token)

    def close(self) -> None:
        self.store.close()
