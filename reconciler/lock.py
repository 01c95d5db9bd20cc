"""An exclusive, non-blocking lock file so two reconciles of one source never interleave.

The lock is an `flock` on a file in the cache dir: the kernel drops it when the holder exits, even
on a crash, so a stale lock never blocks the next run. The file holds the holder's pid, for the
loser's message. The server's compare-and-set covers reconcilers on different machines.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from types import TracebackType

from reconciler.errors import LockHeld


class RunLock:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise LockHeld(
                f"another reconcile of this source is running (pid {holder}, lock {self.path}); "
                "this run did nothing"
            ) from exc
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)  # closing drops the flock; the file stays (deleting it would race)

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()
