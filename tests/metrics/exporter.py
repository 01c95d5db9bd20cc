"""Agent-like /metrics exporters on 127.0.0.1 for the metrics tests and the benchmark.

Each exporter serves a realistic page (~75 series, like the agent's: process and Python series
plus the ctrltower_* ones) whose counter values the test sets, or misbehaves on purpose
(hang, garbage, a 10 MB page, a dropped connection).
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.support.ready import patience

NOISE = "".join(
    f"# HELP python_gc_objects_collected_total Objects collected during gc\n"
    f"# TYPE python_gc_objects_collected_total counter\n"
    f'python_gc_objects_collected_total{{generation="{g}"}} {1000 + g}.0\n'
    for g in range(3)
) + "".join(
    f'otelcol_exporter_queue_size{{exporter="otlphttp/{i}",service_instance_id="abc"}} {i}\n'
    f'otelcol_processor_batch_batch_send_size_bucket{{processor="batch",le="{2**i}"}} {i * 10}\n'
    for i in range(28)
)


def page(values: dict[str, float], *, reorder_labels: bool = False) -> bytes:
    """A page with ctrltower series from `values`: cpu, memory, up, and 'signal:outcome' items."""
    lines = [NOISE]
    lines.append("# HELP ctrltower_agent_info Agent identity\n# TYPE ctrltower_agent_info gauge\n")
    lines.append('ctrltower_agent_info{agent_version="0.1.0",group="edge",revision="abc"} 1.0\n')
    if "up" in values:
        lines.append(f"ctrltower_collector_up {values['up']}\n")
    if "cpu" in values:
        lines.append("# TYPE ctrltower_collector_cpu_seconds_total counter\n")
        lines.append(f"ctrltower_collector_cpu_seconds_total {values['cpu']}\n")
        lines.append("ctrltower_collector_cpu_seconds_created 1.7e9\n")
    if "memory" in values:
        lines.append(f"ctrltower_collector_resident_memory_bytes {values['memory']}\n")
    lines.append("# TYPE ctrltower_collector_items_total counter\n")
    for key, v in sorted(values.items()):
        if ":" in key:
            sig, out = key.split(":")
            labels = (
                f'outcome="{out}",signal="{sig}"' if reorder_labels else f'signal="{sig}",outcome="{out}"'
            )
            lines.append(f"ctrltower_collector_items_total{{{labels}}} {v}\n")
            lines.append(f"ctrltower_collector_items_created{{{labels}}} 1.7e9\n")
    return "".join(lines).encode()


class InFlight:
    """Requests being served at once, across the exporters that share it.

    Each request first waits (bounded) until `hold_until` requests are in flight, or all of the
    `expected` ones not yet answered are, so a scraper allowed to run that many at once is seen doing
    so. It then holds on for `grace_s` more, or until one more request arrives, so a scraper that runs
    more than `hold_until` at once is seen doing so. `peak`: the most requests ever served at once.
    The grace only gives an excess the time to show; a slow machine can hide one, never invent one.
    """

    def __init__(self, hold_until: int, expected: int, timeout_s: float = 5.0, grace_s: float = 0.3) -> None:
        self.hold_until = hold_until
        self.expected = expected
        self.timeout_s = timeout_s
        self.grace_s = grace_s
        self.now = 0
        self.done = 0
        self.peak = 0
        self._cond = threading.Condition()

    def enter(self) -> None:
        with self._cond:
            self.now += 1
            self.peak = max(self.peak, self.now)
            self._cond.notify_all()
            self._cond.wait_for(
                lambda: self.now >= min(self.hold_until, self.expected - self.done),
                timeout=patience(self.timeout_s),
            )
            self._cond.wait_for(lambda: self.peak > self.hold_until, timeout=self.grace_s)

    def leave(self) -> None:  # before the response is written: the scraper's slot is still taken
        with self._cond:
            self.now -= 1
            self.done += 1
            self._cond.notify_all()


class Exporter:
    """One exporter: `values` (what the page says) and `mode` can be changed while it runs."""

    def __init__(
        self, values: dict[str, float] | None = None, mode: str = "ok", in_flight: InFlight | None = None
    ) -> None:
        self.values: dict[str, float] = dict(values or {})
        self.mode = mode
        self.in_flight = in_flight
        self.hits = 0
        self._release = threading.Event()
        exporter = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                exporter.hits += 1
                exporter._serve(self)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/metrics"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def _serve(self, h: BaseHTTPRequestHandler) -> None:
        if self.mode == "hang":
            self._release.wait(30)  # bounded: released on close
            return
        if self.mode == "drop":
            h.connection.shutdown(socket.SHUT_RDWR)
            return
        if self.mode == "truncate":  # promises more than it sends, then closes
            h.send_response(200)
            h.send_header("Content-Length", "5000")
            h.end_headers()
            h.wfile.write(b"ctrltower_collector_up 1\n")
            h.wfile.flush()
            h.connection.shutdown(socket.SHUT_RDWR)
            return
        if self.mode == "garbage":
            body = bytes(range(256)) * 40
        elif self.mode == "huge":
            body = b"x" * (10 * 1024 * 1024)
        elif self.mode == "http500":
            h.send_response(500)
            h.send_header("Content-Length", "0")
            h.end_headers()
            return
        elif self.in_flight is not None:
            self.in_flight.enter()
            body = page(self.values)
            self.in_flight.leave()
        else:
            body = page(self.values)
        h.send_response(200)
        h.send_header("Content-Type", "text/plain; version=0.0.4")
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        with contextlib.suppress(OSError):  # the scraper gave up on a huge page
            h.wfile.write(body)

    def close(self) -> None:
        self._release.set()
        self.server.shutdown()
        self.server.server_close()


@contextmanager
def exporters(*specs: dict[str, Any]) -> Iterator[list[Exporter]]:
    made = [Exporter(**spec) for spec in specs]
    try:
        yield made
    finally:
        for e in made:
            e.close()


def wait_until(cond: Any, timeout: float = 10.0, every: float = 0.05) -> bool:
    """Poll `cond` until true; `timeout` is a nominal bound, scaled for a loaded machine (patience)."""
    deadline = time.monotonic() + patience(timeout)
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(every)
    return bool(cond())
