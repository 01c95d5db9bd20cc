"""demo/sink.py: decodes the OTLP protobuf wire format (gzip or not) and OTLP/JSON, and refuses junk."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from demo.sink import SinkHandle, start_sink
from tests.conftest import ROOT, free_port


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def ld(number: int, payload: bytes) -> bytes:
    """A length-delimited field."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def fixed64(number: int, value: int) -> bytes:
    return _varint(number << 3 | 1) + value.to_bytes(8, "little")


def log_record(body: str) -> bytes:
    # time_unix_nano (fixed64) and severity_number (varint) must be skipped correctly
    return fixed64(1, 1_700_000_000) + _varint(2 << 3) + _varint(9) + ld(5, ld(1, body.encode()))


def logs_request(bodies: list[list[str]]) -> bytes:
    scopes = b"".join(ld(2, b"".join(ld(2, log_record(b)) for b in batch)) for batch in bodies)
    resource = ld(1, ld(1, b"")) + scopes  # an empty Resource, then the ScopeLogs
    return ld(1, resource)


@pytest.fixture
def sink() -> Iterator[SinkHandle]:
    with start_sink("127.0.0.1", 0) as handle:
        yield handle


def test_protobuf_logs_gzip_and_plain(sink: SinkHandle) -> None:
    body = logs_request([["a", "b"], ["c"]])
    headers = {"Content-Type": "application/x-protobuf"}
    r1 = httpx.post(f"{sink.endpoint}/v1/logs", content=body, headers=headers)
    r2 = httpx.post(
        f"{sink.endpoint}/v1/logs",
        content=gzip.compress(body),
        headers={**headers, "Content-Encoding": "gzip"},
    )
    assert (r1.status_code, r2.status_code) == (200, 200)
    assert sink.counts() == {"logs": 6, "metrics": 0, "traces": 0}
    assert sink.bodies() == ["a", "b", "c", "a", "b", "c"]


def test_protobuf_metrics_and_traces(sink: SinkHandle) -> None:
    points = ld(1, fixed64(3, 1)) * 3  # three NumberDataPoints
    gauge = ld(1, b"g") + ld(5, points)  # Metric{name, gauge{data_points x3}}
    summed = ld(1, b"s") + ld(7, ld(1, b"") + _varint(2 << 3) + _varint(2))  # sum: 1 point + temporality
    metrics = ld(1, ld(2, ld(2, gauge) + ld(2, summed)))
    spans = ld(1, ld(2, ld(2, ld(1, b"t" * 16)) + ld(2, ld(1, b"u" * 16))))
    h = {"Content-Type": "application/x-protobuf"}
    assert httpx.post(f"{sink.endpoint}/v1/metrics", content=metrics, headers=h).status_code == 200
    assert httpx.post(f"{sink.endpoint}/v1/traces", content=spans, headers=h).status_code == 200
    assert sink.counts() == {"logs": 0, "metrics": 4, "traces": 2}


def test_json_payloads(sink: SinkHandle) -> None:
    logs = {"resourceLogs": [{"scopeLogs": [{"logRecords": [{"body": {"stringValue": "x"}}, {}]}]}]}
    metrics = {
        "resourceMetrics": [
            {
                "scopeMetrics": [
                    {"metrics": [{"sum": {"dataPoints": [{}, {}]}}, {"gauge": {"dataPoints": [{}]}}]}
                ]
            }
        ]
    }
    traces = {"resourceSpans": [{"scopeSpans": [{"spans": [{}, {}, {}]}]}]}
    for path, doc in (("logs", logs), ("metrics", metrics), ("traces", traces)):
        r = httpx.post(f"{sink.endpoint}/v1/{path}", json=doc)
        assert r.status_code == 200 and r.json() == {}
    assert sink.counts() == {"logs": 2, "metrics": 3, "traces": 3}
    assert sink.bodies() == ["x"]


def test_junk_is_refused_with_json_error(sink: SinkHandle) -> None:
    h = {"Content-Type": "application/x-protobuf"}
    bad = httpx.post(f"{sink.endpoint}/v1/logs", content=b"\x0a\xff\xff\xff", headers=h)
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "bad_request"
    assert (
        httpx.post(
            f"{sink.endpoint}/v1/logs", content=b"{", headers={"Content-Type": "application/json"}
        ).status_code
        == 400
    )
    assert httpx.post(f"{sink.endpoint}/v2/other", content=b"").status_code == 404
    assert (
        httpx.post(
            f"{sink.endpoint}/v1/logs", content=b"x", headers={**h, "Content-Encoding": "gzip"}
        ).status_code
        == 400
    )
    assert sink.counts() == {"logs": 0, "metrics": 0, "traces": 0}


def test_failing_mode_and_counts_endpoint(sink: SinkHandle) -> None:
    sink.set_failing(503)
    h = {"Content-Type": "application/x-protobuf"}
    assert httpx.post(f"{sink.endpoint}/v1/logs", content=logs_request([["a"]]), headers=h).status_code == 503
    sink.set_failing(None)
    assert httpx.post(f"{sink.endpoint}/v1/logs", content=logs_request([["a"]]), headers=h).status_code == 200
    assert json.loads(httpx.get(f"{sink.endpoint}/counts").text) == {"logs": 1, "metrics": 0, "traces": 0}


def test_command_line_fail_with_makes_a_broken_backend(tmp_path: Path) -> None:
    """`python -m demo.sink --fail-with 503` (docs/rollouts.md breaks a demo commit with it) answers
    every export with 503; a status that is not an HTTP error is a usage error."""
    port = free_port()
    cmd = [sys.executable, "-m", "demo.sink", "--listen", f"127.0.0.1:{port}", "--interval", "3600"]
    bad = subprocess.run([*cmd, "--fail-with", "200"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "--fail-with must be an HTTP error status" in bad.stderr
    proc = subprocess.Popen(
        [*cmd, "--fail-with", "503"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        env=dict(os.environ, PYTHONUNBUFFERED="1"),
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().decode().startswith("OTLP/HTTP sink on")  # its readiness line
        h = {"Content-Type": "application/x-protobuf"}
        r = httpx.post(f"http://127.0.0.1:{port}/v1/logs", content=logs_request([["a"]]), headers=h)
        assert r.status_code == 503
    finally:
        proc.terminate()
        proc.communicate(timeout=10)  # reads and closes its stdout
