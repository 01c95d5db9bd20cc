"""A process a test starts and waits on: in a session of its own, its output in a log file, started
until it reports ready (tests/support/ready.py), stopped with SIGTERM and, past a bound, SIGKILL to its
whole session (its children with it).

`ServerProcess` (tests/support/server.py) and `AgentProcess` (tests/support/agent.py) are these: each
says its command line, its environment and what "ready" means for it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from pathlib import Path
from types import TracebackType
from typing import Self

from tests.conftest import ROOT
from tests.support.ready import NotReady, wait_ready


class SessionProcess:
    """Subclasses give `command()`, `reported_ready()`, `what` and `stop_timeout_s`."""

    what = "process"  # for messages: "<what> exited with 1 before it reported ready"
    stop_timeout_s = 15.0  # SIGTERM, then this long before SIGKILL (the default of stop())

    def __init__(self, log_path: Path) -> None:
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def command(self) -> list[str]:
        raise NotImplementedError

    def environment(self) -> dict[str, str]:
        return {**os.environ, "PYTHONUNBUFFERED": "1"}

    def reported_ready(self) -> bool:
        """True once the process has said it is ready (a file it wrote, a socket it answers on)."""
        raise NotImplementedError

    def start(self) -> Self:
        """Start (or start again after stop/kill) and wait until it reports ready; if it exits first,
        NotReady with its output. No fixed timeout: only tests.support.ready's safety cap."""
        if self.proc is not None and self.proc.poll() is None:
            raise RuntimeError(f"{self.what} already running")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                self.command(),
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.environment(),
                start_new_session=True,
            )
        try:
            wait_ready(self.proc, self.reported_ready, self.what, self.log_text)
        except NotReady:
            self.kill()
            raise
        return self

    def stop(self, timeout_s: float | None = None) -> int | None:
        """SIGTERM and wait (SIGKILL the session after `timeout_s`, default `stop_timeout_s`).
        Returns the exit code."""
        proc = self.proc
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(self.stop_timeout_s if timeout_s is None else timeout_s)
            except subprocess.TimeoutExpired:
                self.kill()
        return proc.returncode

    def kill(self) -> None:
        """SIGKILL the process and all of its session at once."""
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
        """True if any process of its session is still alive."""
        if self.proc is None:
            return False
        try:
            os.killpg(self.proc.pid, 0)
        except ProcessLookupError:
            return False
        return True

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
        self._reap_group()

    def log_text(self, last: int = 20000) -> str:
        """The end of its output (stdout and stderr), for assertion messages."""
        try:
            return self.log_path.read_text(errors="replace")[-last:]
        except FileNotFoundError:
            return ""
