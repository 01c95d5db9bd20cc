"""The collector process: start, reload (SIGHUP), stop, validate. The only subprocess user of the agent."""

from __future__ import annotations

import ctypes
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from fsio.atomic import create_private
from schemas.errors import Permanent

_LOG_LINE = re.compile(r"^\d{4}/\d{2}/\d{2} \d{2}:\d{2}:\d{2} ", re.M)
LOG_ROTATE_BYTES = 16 * 1024 * 1024
LOG_MODE = 0o600
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    # If the agent dies (even by SIGKILL), the collector gets SIGTERM instead of running unsupervised.
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        pass


class CollectorProcess:
    """One supervised collector. Not thread-safe: the agent's loop is its only caller."""

    def __init__(self, binary: Path, config_path: Path, env: dict[str, str], log_path: Path) -> None:
        self.binary = binary
        self.config_path = config_path
        self.env = env
        self.log_path = log_path
        self._proc: subprocess.Popen[bytes] | None = None
        self.started_at: float | None = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None and self._proc.poll() is None else None

    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def exit_code(self) -> int | None:
        """The exit code of a process that was started and has exited (None: running or never started)."""
        return None if self._proc is None else self._proc.poll()

    def forget(self) -> None:
        """Drop a dead process, so it is not reported as crashed again."""
        if self._proc is not None and self._proc.poll() is not None:
            self._proc = None

    def log_mark(self) -> int:
        try:
            return self.log_path.stat().st_size
        except FileNotFoundError:
            return 0

    def log_since(self, mark: int, limit: int = 3000) -> str:
        """What the collector wrote since `mark` (the last `limit` characters)."""
        try:
            with self.log_path.open("rb") as f:
                size = f.seek(0, os.SEEK_END)
                start = max(mark if mark <= size else 0, size - limit)
                f.seek(start)
                return f.read().decode("utf-8", "replace").strip()
        except FileNotFoundError:
            return ""

    def trim_log(self) -> None:
        """Keep the log bounded while the collector writes to it: copy it aside and truncate it in place
        (the collector appends with O_APPEND, so it goes on writing at the new end)."""
        if self.log_mark() > LOG_ROTATE_BYTES:
            aside = self.log_path.with_suffix(".log.1")
            with open(self.log_path, "rb") as src, os.fdopen(create_private(aside), "wb") as dst:
                shutil.copyfileobj(src, dst)
            os.truncate(self.log_path, 0)

    def _open_log(self) -> int:
        """The log, appended to, owner-only (it may echo config values), never through a symlink."""
        if self.log_mark() > LOG_ROTATE_BYTES:
            os.replace(self.log_path, self.log_path.with_suffix(".log.1"))
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW
        fd = os.open(self.log_path, flags, LOG_MODE)
        os.fchmod(fd, LOG_MODE)  # a log left 0644 by an older agent
        return fd

    def start(self) -> int:
        if self.alive():
            raise RuntimeError("collector already running")
        fd = self._open_log()
        try:
            self._proc = subprocess.Popen(
                [str(self.binary), "--config", str(self.config_path)],
                stdin=subprocess.DEVNULL,
                stdout=fd,
                stderr=fd,
                env=self.env,
                close_fds=True,
                preexec_fn=_die_with_parent if sys.platform == "linux" else None,
            )
        except OSError as exc:
            raise Permanent(f"cannot start collector {self.binary}: {exc}") from exc
        finally:
            os.close(fd)
        self.started_at = time.monotonic()
        return self._proc.pid

    def reload(self) -> None:
        """Ask the running collector to reload its config (SIGHUP)."""
        if self._proc is None or self._proc.poll() is not None:
            raise RuntimeError("collector not running")
        self._proc.send_signal(signal.SIGHUP)

    def stop(self, timeout: float) -> int | None:
        """SIGTERM, then SIGKILL after `timeout`; returns the exit code (None if it was not running)."""
        proc = self._proc
        if proc is None:
            return None
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        self._proc = None
        self.started_at = None
        return proc.returncode


class CollectorNotRunnable(Permanent):
    """The collector binary could not be run at all (missing, not executable, timed out)."""


def check_config(binary: Path, config: Path, env: dict[str, str] | None, timeout: float = 60.0) -> str | None:
    """Run `BIN validate --config FILE`: None if valid, else the collector's error message.

    The one place that runs the collector's validate (the agent before every swap, `ctrltower validate
    --collector` in CI). Raises CollectorNotRunnable when the binary cannot answer. `env` None: inherit.
    """
    try:
        out = subprocess.run(
            [str(binary), "validate", "--config", str(config)],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            env=env,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise CollectorNotRunnable(f"collector validate timed out after {timeout:g}s") from exc
    except OSError as exc:
        raise CollectorNotRunnable(f"cannot run collector {binary}: {exc}") from exc
    if out.returncode == 0:
        return None
    text = (out.stderr or out.stdout).decode("utf-8", "replace").strip()
    # The collector prints the error twice ("Error: ..." and a timestamped log line): keep the first.
    first = _LOG_LINE.split(text, 1)[0].strip()
    return (first or f"collector validate exited with code {out.returncode}")[-4000:]


def validate(binary: Path, config: Path, env: dict[str, str], timeout: float = 60.0) -> str | None:
    """check_config for the agent: None if valid, else why not (a binary that cannot run included)."""
    try:
        return check_config(binary, config, env, timeout)
    except CollectorNotRunnable as exc:
        return str(exc)


def version(binary: Path) -> str | None:
    """The collector's version ("0.135.0-dev"), or None if it cannot be asked."""
    try:
        out = subprocess.run(
            [str(binary), "--version"], stdin=subprocess.DEVNULL, capture_output=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    words = out.stdout.decode("utf-8", "replace").split()
    return words[-1] if out.returncode == 0 and words else None
