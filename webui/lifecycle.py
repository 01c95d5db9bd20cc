"""Process lifecycle of `ctrltower server`: the readiness report, parent-death signals, leftover checks.

Leftovers: the main process holds an exclusive lock on `DIR/server.lock` (inherited by its forked
granian workers) and the metrics process one on `DIR/metrics.lock`, each with its pid written in.
A server started on a data dir where either lock is held (another server, or a process an earlier
one left behind) says which pid holds it and exits 5, instead of waiting on DuckDB's file lock.
Children get a parent-death signal (`die_with_parent`), so a SIGKILLed server leaves nothing behind.

Readiness: a granian worker that has built its app writes `DIR/run/worker-<pid>` (the listening socket
was bound by the main process before any worker started, so a worker with its app is a worker that
answers). The main process's `ReadyAnnouncer` waits for the first such marker, then writes
`DIR/server.ready` (JSON: pid, url) atomically and prints one line,
`ctrltower server: ready on http://HOST:PORT (pid N)`, on stdout. Supervisors (systemd, tests, the demo)
wait for that line or file, or for the process to exit; never for a fixed time.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import json
import logging
import os
import shutil
import signal
import sys
import threading
from pathlib import Path

from fsio.atomic import atomic_write
from webui import datadir

log = logging.getLogger("ctrltower.server")

SERVER_LOCK = "server.lock"
METRICS_LOCK = "metrics.lock"

READY_FILE = "server.ready"
RUN_DIR = "run"
READY_LINE = "ctrltower server: ready on"
_PR_SET_PDEATHSIG = 1


def ready_path(data_dir: Path) -> Path:
    return data_dir / READY_FILE


def clear_ready(data_dir: Path) -> None:
    """Forget the readiness reports of an earlier run: its ready file, worker markers, metrics socket
    (the metrics process binds a fresh one once it listens; a stale one would look ready)."""
    ready_path(data_dir).unlink(missing_ok=True)
    shutil.rmtree(data_dir / RUN_DIR, ignore_errors=True)
    datadir.metrics_socket(data_dir).unlink(missing_ok=True)


def mark_worker_ready(data_dir: Path) -> None:
    """Called in a worker once its app is built: tell the main process this worker can answer."""
    run = data_dir / RUN_DIR
    run.mkdir(mode=0o700, exist_ok=True)
    (run / f"worker-{os.getpid()}").touch()


def url_for(host: str, port: int) -> str:
    """The URL a client on this host uses (a wildcard listen address is reached on loopback)."""
    if host in ("0.0.0.0", ""):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


class ReadyAnnouncer:
    """Waits (in a thread of the main process) for the first ready worker, then reports readiness."""

    def __init__(self, data_dir: Path, url: str, poll_s: float = 0.05) -> None:
        self.data_dir = data_dir
        self.url = url
        self.poll_s = poll_s
        self.ready = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ready-announcer", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _any_worker_ready(self) -> bool:
        try:
            return any((self.data_dir / RUN_DIR).iterdir())
        except FileNotFoundError:
            return False

    def _run(self) -> None:
        # No deadline on purpose: a loaded machine may take minutes; whoever waits for us decides.
        while not self._stop.is_set():
            if self._any_worker_ready():
                self._announce()
                return
            self._stop.wait(self.poll_s)

    def _announce(self) -> None:
        path = ready_path(self.data_dir)
        # readable by whoever supervises the server (no secret in it)
        atomic_write(path, (json.dumps({"pid": os.getpid(), "url": self.url}) + "\n").encode(), 0o644)
        self.ready.set()
        # stdout, not the log: the one line a supervisor can wait for, whatever the log level
        print(f"{READY_LINE} {self.url} (pid {os.getpid()})", file=sys.stdout, flush=True)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        with contextlib.suppress(OSError):
            ready_path(self.data_dir).unlink(missing_ok=True)


def die_with_parent(parent_pid: int, sig: int = signal.SIGTERM) -> None:
    """Ask Linux to send `sig` to this process when its parent dies (SIGKILL included); exit now if
    the parent (`parent_pid`) is already gone (it may have died before this call).

    Linux ties the signal to the parent *thread* that forked us: callers spawn children from threads
    that live as long as the parent wants the children to. Elsewhere only the parent check runs.
    """
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
    if os.getppid() != parent_pid:
        log.error("parent process %s is gone: exiting", parent_pid)
        os._exit(1)


class LockHeld(Exception):
    """Another live process holds the lock; `pid` is what it wrote there (None: unreadable)."""

    def __init__(self, path: Path, pid: int | None) -> None:
        super().__init__(f"{path} is locked by pid {pid}")
        self.path = path
        self.pid = pid


class PidLock:
    """An exclusive, non-blocking flock on a file that names its holder's pid.

    The kernel drops the lock when the last descriptor of it closes (the holder and any process that
    inherited it by fork exit), so a SIGKILLed holder never leaves a stale lock behind.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self) -> PidLock:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise LockHeld(self.path, read_pid(self.path)) from None
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def check_free(self) -> None:
        """Raise LockHeld if someone holds the lock now; leave it free either way."""
        self.acquire()
        self.release()


def read_pid(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None
