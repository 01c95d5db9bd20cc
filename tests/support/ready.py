"""Waiting for a process to report readiness, never for a fixed time.

A test starts a process and waits until the process itself says it is ready (a ready file, a line on
stdout, a socket it binds once listening) or until it exits; then the test fails with the process's
output. The only clock is a very generous safety cap (`READY_CAP_S`, default 600 s, overridable with
`CTRLTOWER_TEST_READY_CAP`), there so a hung process cannot hang the suite: on a machine loaded to a
load average of 20 a start may take a minute, and that must not fail a test.

Waits for events that are not a process's own report (a line reaching a sink, a rate appearing) use
`patience(seconds)`: the nominal bound times `CTRLTOWER_TEST_PATIENCE` (default 4). A passing wait
returns as soon as its condition holds, so the factor costs nothing unless the test fails.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

READY_CAP_S = float(os.environ.get("CTRLTOWER_TEST_READY_CAP", "600"))
PATIENCE = float(os.environ.get("CTRLTOWER_TEST_PATIENCE", "4"))


def patience(seconds: float) -> float:
    """A bound on waiting for an event, scaled for a loaded machine."""
    return seconds * PATIENCE


class NotReady(RuntimeError):
    """The process exited before it reported ready, or the safety cap passed."""


def wait_ready(
    proc: subprocess.Popen[bytes] | subprocess.Popen[str],
    check: Callable[[], T | None],
    what: str,
    output: Callable[[], str] = lambda: "",
    interval_s: float = 0.05,
) -> T:
    """Poll `check` until it returns a value (the process's readiness report) or `proc` exits."""
    started = time.monotonic()
    while True:
        value = check()
        if value:
            return value
        code = proc.poll()
        if code is not None:
            raise NotReady(f"{what} exited with {code} before it reported ready:\n{output()}")
        if time.monotonic() - started > READY_CAP_S:
            raise NotReady(
                f"{what} is still running but reported nothing for {READY_CAP_S:g} s "
                f"(safety cap, CTRLTOWER_TEST_READY_CAP):\n{output()}"
            )
        time.sleep(interval_s)


def wait_until(
    predicate: Callable[[], T],
    timeout: float,
    interval: float = 0.05,
    what: str = "",
    ignore: tuple[type[Exception], ...] = (),
) -> T:
    """Poll `predicate` until it returns a truthy value; fail with `what` on timeout. An exception in
    `ignore` (e.g. httpx.HTTPError from a server still starting) counts as "not yet".

    `timeout` is a nominal bound on an event that is not a process's own report, scaled by `patience`.
    """
    timeout = patience(timeout)
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = predicate()
        except ignore:
            value = None  # type: ignore[assignment]
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what or predicate}")
        time.sleep(interval)
