"""`python -m tests.support.pg -- CMD` must not leave PostgreSQL behind when it is signalled (a CI
timeout, Ctrl-C): it passes the signal to CMD, waits for it, and stops and removes the cluster."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import pytest

from tests.conftest import ROOT
from tests.support import pg

pytestmark = pytest.mark.skipif(not pg.available(), reason="PostgreSQL is not installed")


def _line_starting(out: IO[str], prefix: str) -> str:
    """The first line of `out` that starts with `prefix` (readline returns "" once the process exits;
    pytest-timeout bounds a process that hangs silently)."""
    while line := out.readline():
        if line.startswith(prefix):
            return line
    raise AssertionError(f"the runner exited before printing {prefix!r}")


def _postgres_running(port: int) -> bool:
    for proc in Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if cmdline and cmdline[0].endswith(b"postgres") and f"port={port}".encode() in b" ".join(cmdline):
            return True
    return False


@contextmanager
def _runner(child_source: str) -> Iterator[tuple[subprocess.Popen[str], int]]:
    """`python -m tests.support.pg -- python -c SOURCE`, once its cluster is up: (runner, port)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.support.pg", "--", sys.executable, "-c", child_source],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert proc.stdout is not None
        first = _line_starting(proc.stdout, "tests.support.pg: PostgreSQL on port")
        yield proc, int(re.search(r"port (\d+)", first).group(1))  # type: ignore[union-attr]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signalled_runner_stops_its_command_and_its_cluster(signum: int, tmp_path: Path) -> None:
    marker = tmp_path / "child-ended"
    # CMD records that it was signalled, so the test proves the signal reached it (not only the runner)
    child = (
        f"import signal, sys, time\n"
        f"signal.signal({int(signum)}, lambda *a: (open({str(marker)!r}, 'w').close(), sys.exit(3)))\n"
        f"print('child up', flush=True)\n"
        f"time.sleep(600)\n"
    )
    with _runner(child) as (proc, port):
        assert proc.stdout is not None
        _line_starting(proc.stdout, "child up")
        assert _postgres_running(port)
        proc.send_signal(signum)
        assert proc.wait(timeout=120) == 3  # CMD's own exit code
        assert marker.exists()
        assert not _postgres_running(port)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_before_the_command_runs_is_not_lost(signum: int) -> None:
    """Signalled as soon as the cluster is up (CMD may not run yet): the runner still ends, with the
    cluster stopped. Seen under stress-ng: a SIGINT in that window was ignored (inherited from the
    pytest-xdist worker) and the runner waited for a CMD that never got it."""
    with _runner("import time\ntime.sleep(600)") as (proc, port):
        proc.send_signal(signum)
        assert proc.wait(timeout=120) != 0
        assert not _postgres_running(port)
