"""An OTLP/HTTP sink for tests and `make demo`: counts what collectors send to it.

It accepts POST /v1/logs, /v1/metrics and /v1/traces, protobuf (the otlphttp exporter's default,
usually gzip-compressed) or JSON, and counts log records, metric data points and spans. It decodes
just enough of the protobuf wire format to count them and to keep log bodies (so a test can tell
which file a line came from); nothing else is interpreted.

    handle = start_sink("127.0.0.1", 0)
    ... point an exporter at handle.endpoint ...
    handle.counts()            # {"logs": n, "metrics": n, "traces": n}
    handle.close()

`python -m demo.sink --listen 127.0.0.1:4318` runs it in the foreground and prints the counts;
`--fail-with 503` makes it a broken backend that refuses every export.
"""

from __future__ import annotations

import argparse
import gzip
import json
import threading
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

MAX_BODY = 64 * 1024 * 1024  # refuse anything bigger: this is a test sink
MAX_KEPT_BODIES = 200_000

PATHS = {"/v1/logs": "logs", "/v1/metrics": "metrics", "/v1/traces": "traces"}


class DecodeError(ValueError):
    """The payload is not valid protobuf/JSON of the expected shape."""


# --- protobuf wire format ---------------------------------------------------------------------------


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = 0
    shift = 0
    while True:
        if pos >= len(buf):
            raise DecodeError("truncated varint")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise DecodeError("varint too long")


def fields(buf: bytes) -> Iterator[tuple[int, int, bytes | int]]:
    """Yield (field number, wire type, value) of one message; value is bytes for length-delimited."""
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise DecodeError("field number 0")
        if wire == 0:
            value, pos = _varint(buf, pos)
            yield number, wire, value
        elif wire == 1:
            if pos + 8 > len(buf):
                raise DecodeError("truncated fixed64")
            yield number, wire, buf[pos : pos + 8]
            pos += 8
        elif wire == 2:
            length, pos = _varint(buf, pos)
            if pos + length > len(buf):
                raise DecodeError("truncated length-delimited field")
            yield number, wire, buf[pos : pos + length]
            pos += length
        elif wire == 5:
            if pos + 4 > len(buf):
                raise DecodeError("truncated fixed32")
            yield number, wire, buf[pos : pos + 4]
            pos += 4
        else:
            raise DecodeError(f"unsupported wire type {wire}")


def _submessages(buf: bytes, number: int) -> Iterator[bytes]:
    for num, wire, value in fields(buf):
        if num == number and wire == 2 and isinstance(value, bytes):
            yield value


def _any_value_text(buf: bytes) -> str | None:
    """AnyValue.string_value (field 1); other kinds are not kept."""
    for num, wire, value in fields(buf):
        if num == 1 and wire == 2 and isinstance(value, bytes):
            return value.decode("utf-8", "replace")
    return None


def count_logs_pb(buf: bytes, bodies: list[str] | None = None) -> int:
    # ExportLogsServiceRequest.resource_logs=1 > ResourceLogs.scope_logs=2 > ScopeLogs.log_records=2
    n = 0
    for resource in _submessages(buf, 1):
        for scope in _submessages(resource, 2):
            for record in _submessages(scope, 2):
                n += 1
                if bodies is not None:
                    for body in _submessages(record, 5):  # LogRecord.body
                        text = _any_value_text(body)
                        if text is not None:
                            bodies.append(text)
    return n


# Metric oneof data fields: gauge=5, sum=7, histogram=9, exponential_histogram=10, summary=11;
# each holds data_points=1.
_METRIC_DATA_FIELDS = (5, 7, 9, 10, 11)


def count_metrics_pb(buf: bytes) -> int:
    # ExportMetricsServiceRequest.resource_metrics=1 > scope_metrics=2 > metrics=2 > data > data_points=1
    n = 0
    for resource in _submessages(buf, 1):
        for scope in _submessages(resource, 2):
            for metric in _submessages(scope, 2):
                for num, wire, value in fields(metric):
                    if num in _METRIC_DATA_FIELDS and wire == 2 and isinstance(value, bytes):
                        n += sum(1 for _ in _submessages(value, 1))
    return n


def count_traces_pb(buf: bytes) -> int:
    # ExportTraceServiceRequest.resource_spans=1 > ScopeSpans=2 > spans=2
    return sum(
        1
        for resource in _submessages(buf, 1)
        for scope in _submessages(resource, 2)
        for _ in _submessages(scope, 2)
    )


# --- JSON (OTLP/JSON uses lowerCamelCase field names) ----------------------------------------------------


def _list(obj: Any, key: str) -> list[Any]:
    value = obj.get(key, []) if isinstance(obj, dict) else None
    if not isinstance(value, list):
        raise DecodeError(f"'{key}' must be a list")
    return value


def count_json(signal: str, doc: Any, bodies: list[str] | None = None) -> int:
    if not isinstance(doc, dict):
        raise DecodeError("JSON body must be an object")
    n = 0
    if signal == "logs":
        for resource in _list(doc, "resourceLogs"):
            for scope in _list(resource, "scopeLogs"):
                for record in _list(scope, "logRecords"):
                    n += 1
                    body = record.get("body") if isinstance(record, dict) else None
                    if bodies is not None and isinstance(body, dict) and "stringValue" in body:
                        bodies.append(str(body["stringValue"]))
    elif signal == "metrics":
        for resource in _list(doc, "resourceMetrics"):
            for scope in _list(resource, "scopeMetrics"):
                for metric in _list(scope, "metrics"):
                    for kind in ("gauge", "sum", "histogram", "exponentialHistogram", "summary"):
                        if isinstance(metric, dict) and kind in metric:
                            n += len(_list(metric[kind], "dataPoints"))
    else:
        for resource in _list(doc, "resourceSpans"):
            for scope in _list(resource, "scopeSpans"):
                n += len(_list(scope, "spans"))
    return n


# --- the server ----------------------------------------------------------------------------------------


@dataclass
class SinkState:
    lock: threading.Lock = field(default_factory=threading.Lock)
    items: dict[str, int] = field(default_factory=lambda: {"logs": 0, "metrics": 0, "traces": 0})
    requests: dict[str, int] = field(default_factory=lambda: {"logs": 0, "metrics": 0, "traces": 0})
    bodies: list[str] = field(default_factory=list)
    rejected: int = 0
    # set to an HTTP status (e.g. 503) to make every export fail, as a broken backend would
    fail_with: int | None = None


class _Handler(BaseHTTPRequestHandler):
    server: _SinkServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet: tests read counts, not logs
        return

    def _reply(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _error(self, status: int, message: str) -> None:
        body = json.dumps({"error": {"code": "bad_request", "message": message}}).encode()
        self._reply(status, body, "application/json")

    def do_GET(self) -> None:
        if self.path != "/counts":
            self._error(404, "not found")
            return
        self._reply(200, json.dumps(self.server.sink.counts()).encode(), "application/json")

    def do_POST(self) -> None:
        signal = PATHS.get(self.path.split("?")[0])
        state = self.server.sink.state
        try:
            length = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            self._error(400, "bad Content-Length")
            return
        if length < 0 or length > MAX_BODY:
            self._error(413, "body too large")
            return
        raw = self.rfile.read(length)
        if signal is None:
            self._error(404, f"unknown path {self.path}")
            return
        if state.fail_with is not None:
            self._error(state.fail_with, "sink configured to fail")
            return
        try:
            n, bodies = self._decode(signal, raw)
        except (DecodeError, OSError, EOFError, zlib.error, UnicodeDecodeError, ValueError) as exc:
            with state.lock:
                state.rejected += 1
            self._error(400, f"cannot decode {signal} payload: {exc}")
            return
        with state.lock:
            state.items[signal] += n
            state.requests[signal] += 1
            room = MAX_KEPT_BODIES - len(state.bodies)
            if room > 0:
                state.bodies.extend(bodies[:room])
        if "json" in (self.headers.get("Content-Type") or ""):
            self._reply(200, b"{}", "application/json")
        else:  # an empty Export*ServiceResponse
            self._reply(200, b"", "application/x-protobuf")

    def _decode(self, signal: str, raw: bytes) -> tuple[int, list[str]]:
        encoding = (self.headers.get("Content-Encoding") or "").lower()
        if encoding == "gzip":
            raw = gzip.decompress(raw)
        elif encoding == "deflate":
            raw = zlib.decompress(raw)
        elif encoding not in ("", "identity"):
            raise DecodeError(f"unsupported Content-Encoding {encoding}")
        bodies: list[str] = []
        if "json" in (self.headers.get("Content-Type") or ""):
            return count_json(signal, json.loads(raw.decode("utf-8")), bodies), bodies
        if signal == "logs":
            return count_logs_pb(raw, bodies), bodies
        if signal == "metrics":
            return count_metrics_pb(raw), bodies
        return count_traces_pb(raw), bodies


class _SinkServer(ThreadingHTTPServer):
    daemon_threads = True
    sink: SinkHandle


class SinkHandle:
    """A running sink: its endpoint, its counts, and close()."""

    def __init__(self, server: _SinkServer) -> None:
        self.state = SinkState()
        self._server = server
        server.sink = self
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True
        )
        self._thread.start()

    @property
    def host(self) -> str:
        return str(self._server.server_address[0])

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def endpoint(self) -> str:
        """The base URL for an otlphttp exporter's `endpoint`."""
        return f"http://{self.host}:{self.port}"

    def counts(self) -> dict[str, int]:
        with self.state.lock:
            return dict(self.state.items)

    def bodies(self) -> list[str]:
        with self.state.lock:
            return list(self.state.bodies)

    def set_failing(self, status: int | None) -> None:
        with self.state.lock:
            self.state.fail_with = status

    def wait_for(self, signal: str, at_least: int, timeout: float) -> int:
        """Wait until `signal` has at least `at_least` items; return the count (maybe fewer on timeout)."""
        deadline = time.monotonic() + timeout
        while True:
            n = self.counts()[signal]
            if n >= at_least or time.monotonic() >= deadline:
                return n
            time.sleep(0.05)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> SinkHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def start_sink(host: str = "127.0.0.1", port: int = 0) -> SinkHandle:
    """Start a sink on host:port (0: an ephemeral port) in a background thread."""
    return SinkHandle(_SinkServer((host, port), _Handler))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m demo.sink", description=__doc__.splitlines()[0])
    parser.add_argument("--listen", default="127.0.0.1:4318", help="HOST:PORT (default 127.0.0.1:4318)")
    parser.add_argument("--interval", type=float, default=5.0, help="seconds between count lines")
    parser.add_argument(
        "--fail-with",
        type=int,
        default=None,
        metavar="STATUS",
        help="answer every export with this HTTP status (e.g. 503: a broken backend, docs/rollouts.md)",
    )
    args = parser.parse_args(argv)
    if args.fail_with is not None and not 400 <= args.fail_with <= 599:
        parser.error(f"--fail-with must be an HTTP error status (400-599), not {args.fail_with}")
    host, _, port = args.listen.rpartition(":")
    sink = start_sink(host or "127.0.0.1", int(port))
    sink.set_failing(args.fail_with)
    print(f"OTLP/HTTP sink on {sink.endpoint}", flush=True)
    try:
        while True:
            time.sleep(args.interval)
            print(json.dumps(sink.counts()), flush=True)
    except KeyboardInterrupt:
        sink.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
