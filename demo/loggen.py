"""A small log generator for `make demo`: appends realistic application log lines to files.

Each target directory gets `app.log`, written at a steady rate (lines per second) so the collectors
tailing `${APP_LOG_DIR}/*.log` have something to ship. When a file passes `max_bytes` it is
truncated (copytruncate style) so a long-running demo does not fill the disk.

Run alone: `python -m demo.loggen DIR [DIR ...] --rate 20`.
"""

from __future__ import annotations

import argparse
import json
import random
import signal
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

LEVELS = ("INFO", "INFO", "INFO", "DEBUG", "WARN", "ERROR")
ROUTES = ("/api/orders", "/api/cart", "/healthz", "/api/users/42", "/login", "/api/search?q=otel")


def make_line(rng: random.Random, seq: int, service: str) -> str:
    record = {
        "ts": datetime.now(UTC).isoformat(timespec="milliseconds"),
        "level": rng.choice(LEVELS),
        "service": service,
        "seq": seq,
        "route": rng.choice(ROUTES),
        "status": rng.choice((200, 200, 200, 201, 304, 404, 500)),
        "duration_ms": round(rng.expovariate(1 / 40), 1),
    }
    return json.dumps(record, separators=(",", ":"))


class LogGenerator:
    """Writes `rate` lines per second into DIR/app.log for every DIR, on one background thread."""

    def __init__(
        self, dirs: Sequence[Path], rate: float = 20.0, max_bytes: int = 16 * 1024 * 1024, seed: int = 7
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.dirs = [Path(d) for d in dirs]
        self.rate = rate
        self.max_bytes = max_bytes
        self.lines_written: dict[Path, int] = {d: 0 for d in self.dirs}
        self._rng = random.Random(seed)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="loggen", daemon=True)

    def start(self) -> LogGenerator:
        for directory in self.dirs:
            directory.mkdir(parents=True, exist_ok=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def write_batch(self, count: int) -> None:
        for directory in self.dirs:
            path = directory / "app.log"
            if path.exists() and path.stat().st_size > self.max_bytes:
                path.write_bytes(b"")
            base = self.lines_written[directory]
            lines = [make_line(self._rng, base + i, directory.name) for i in range(count)]
            with path.open("a", encoding="utf-8") as handle:
                handle.write("\n".join(lines) + "\n")
            self.lines_written[directory] = base + count

    def _run(self) -> None:
        # Due lines come from the clock, not from counting ticks: on a loaded machine a tick can take
        # longer than planned, and the generator then catches up instead of writing at a lower rate
        # (the end-to-end tests compare what users see with this rate).
        tick = 0.25
        started = time.monotonic()
        written = 0
        while not self._stop.is_set():
            due = int(self.rate * (time.monotonic() - started)) - written
            if due > 0:
                self.write_batch(due)
                written += due
            self._stop.wait(tick)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("dirs", nargs="+", type=Path)
    parser.add_argument("--rate", type=float, default=20.0, help="lines per second per directory")
    args = parser.parse_args(argv)
    generator = LogGenerator(args.dirs, rate=args.rate).start()
    done = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: done.set())
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    while not done.wait(1.0):
        pass
    generator.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
