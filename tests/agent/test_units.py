"""Pure parts of the agent: metric page parsing, monotonic counters, /proc, state dir, option parsing."""

from __future__ import annotations

import os
import random
from datetime import UTC, datetime
from pathlib import Path

import click
import pytest
from prometheus_client import CollectorRegistry, generate_latest

from agent.backoff import Backoff
from agent.client import parse_retry_after
from agent.collector_metrics import MonotonicCounters, parse_page, process_usage
from agent.metrics import AgentMetrics
from agent.state import StateDir, StoredConfig
from ctrltower.params import parse_duration, parse_labels, parse_listen
from schemas.common import config_hash

# An excerpt of a real otelcol-contrib 0.135 internal metrics page (two receivers to check summing).
PAGE = """# HELP target_info Target metadata
# TYPE target_info gauge
target_info{service_instance_id="5a95f222-0194",service_name="otelcontribcol",service_version="0.135.0-dev"} 1
# HELP otelcol_exporter_send_failed_log_records_total Number of log records in failed attempts.
# TYPE otelcol_exporter_send_failed_log_records_total counter
otelcol_exporter_send_failed_log_records_total{exporter="otlphttp",otel_scope_name="x"} 2
# HELP otelcol_exporter_sent_log_records_total Number of log record successfully sent to destination.
# TYPE otelcol_exporter_sent_log_records_total counter
otelcol_exporter_sent_log_records_total{exporter="otlphttp",otel_scope_name="x",otel_scope_version=""} 25
# HELP otelcol_receiver_accepted_log_records_total Number of log records successfully pushed.
# TYPE otelcol_receiver_accepted_log_records_total counter
otelcol_receiver_accepted_log_records_total{receiver="filelog",transport=""} 25
otelcol_receiver_accepted_log_records_total{receiver="filelog/2",transport=""} 5
# TYPE otelcol_receiver_failed_log_records_total counter
otelcol_receiver_failed_log_records_total{receiver="filelog",transport=""} 7
# TYPE otelcol_receiver_refused_log_records_total counter
otelcol_receiver_refused_log_records_total{receiver="filelog",transport=""} 1
# TYPE otelcol_exporter_sent_spans counter
otelcol_exporter_sent_spans{exporter="otlphttp"} 4
# TYPE otelcol_process_cpu_seconds_total counter
otelcol_process_cpu_seconds_total 0.04
"""


def test_parse_page_sums_receivers_and_finds_instance() -> None:
    page = parse_page(PAGE)
    assert page.instance_id == "5a95f222-0194"
    assert page.items == {
        ("logs", "accepted"): 30.0,
        ("logs", "refused"): 1.0,
        ("logs", "sent"): 25.0,
        ("logs", "send_failed"): 2.0,
        ("traces", "sent"): 4.0,  # older collectors: no _total suffix
    }
    assert parse_page("garbage {{{").items == {}


def test_monotonic_counters_survive_reloads_and_restarts() -> None:
    c = MonotonicCounters()
    c.observe("a", {"x": 10.0})
    c.observe("a", {"x": 15.0})
    assert c.value("x") == 15
    c.observe("b", {"x": 20.0})  # a reload: new instance; its 20 adds to the earlier 15
    assert c.value("x") == 35
    c.observe("b", {"x": 3.0})  # a reset without a new instance id
    assert c.value("x") == 38
    c.observe("b", {})  # a pipeline removed: keep what we had
    assert c.value("x") == 38


def test_process_usage_reads_proc() -> None:
    usage = process_usage(os.getpid())
    assert usage is not None and usage.rss_bytes > 1_000_000 and usage.cpu_seconds > 0
    assert process_usage(2**22 + 12345) is None


def test_agent_metrics_names_and_monotonic_items() -> None:
    registry = CollectorRegistry()
    m = AgentMetrics(registry)
    m.set_info("0.1.0", "0.135.0", "ct-1", "edge", "abc123")
    m.observe_items("i1", {("logs", "accepted"): 5.0})
    m.observe_items("i2", {("logs", "accepted"): 2.0})
    m.applies.labels(result="failed").inc()
    text = generate_latest(registry).decode()
    assert 'ctrltower_collector_items_total{outcome="accepted",signal="logs"} 7.0' in text
    assert 'ctrltower_collector_items_total{outcome="sent",signal="traces"} 0.0' in text
    assert 'ctrltower_config_applies_total{result="failed"} 1.0' in text
    assert 'ctrltower_agent_info{agent_version="0.1.0",collector_version="0.135.0",group="edge",' in text
    for name in (
        "ctrltower_collector_up",
        "ctrltower_collector_restarts_total",
        "ctrltower_collector_cpu_seconds_total",
    ):
        assert f"\n{name} " in text
    m.set_info("0.1.0", "0.135.0", "ct-1", "edge", "def456")  # a new revision replaces the old series
    assert generate_latest(registry).decode().count("ctrltower_agent_info{") == 1


def test_state_dir_persists_and_distrusts_torn_files(tmp_path: Path) -> None:
    state = StateDir(tmp_path / "state")
    first = state.instance_id()
    assert StateDir(tmp_path / "state").instance_id() == first and len(first) >= 8
    cfg = StoredConfig(b"a: 1\n", config_hash(b"a: 1\n"), "abc1234", "edge")
    state.save_last_good(cfg)
    assert state.last_good() == cfg
    (tmp_path / "state" / "last_good.yaml").write_bytes(b"a: 2\n")  # bytes no longer match the hash
    assert state.last_good() is None
    state.save_failed_hash("f" * 64)
    assert state.failed_hash() == "f" * 64
    state.save_failed_hash(None)
    assert state.failed_hash() is None
    state.set_operator_stopped(True)
    assert StateDir(tmp_path / "state").operator_stopped()
    state.set_operator_stopped(False)
    assert not state.operator_stopped()
    assert not [p for p in (tmp_path / "state").iterdir() if p.name.endswith(".tmp")]


def test_retry_after_and_backoff() -> None:
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("junk") is None
    now = datetime(2026, 1, 1, 0, 0, 0, tzinfo=UTC)
    assert parse_retry_after("Thu, 01 Jan 2026 00:00:10 GMT", now=now) == 10.0
    b = Backoff(initial=1.0, maximum=8.0, rng=random.Random(1))
    delays = [b.next_delay() for _ in range(6)]
    ceilings = [1, 2, 4, 8, 8, 8]
    assert all(c / 2 <= d <= c for d, c in zip(delays, ceilings, strict=True))
    b.reset()
    assert b.next_delay() <= 1.0


def test_option_parsers() -> None:
    assert parse_duration("15s") == 15.0 and parse_duration("500ms") == 0.5 and parse_duration("2") == 2.0
    assert parse_duration("1m") == 60.0
    assert parse_labels("env=prod, role=edge") == {"env": "prod", "role": "edge"}
    assert parse_labels("") == {}
    assert parse_listen("127.0.0.1:9100") == ("127.0.0.1", 9100)
    assert parse_listen(":9100") == ("127.0.0.1", 9100) and parse_listen("[::1]:0") == ("::1", 0)
    for bad, fn in (
        ("0s", parse_duration),
        ("x", parse_duration),
        ("novalue", parse_labels),
        ("h:p", parse_listen),
        ("h:65536", parse_listen),
    ):
        with pytest.raises(click.BadParameter):
            fn(bad)


def test_client_honours_retry_after_and_reads_error_codes() -> None:
    """A real HTTP server on 127.0.0.1 answering the way a busy or refusing server does."""
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from agent.client import AgentClient, ServerRefused, ServerUnavailable

    answers = [
        (503, {"Retry-After": "7"}, {"error": {"code": "busy", "message": "later"}}),
        (404, {}, {"error": {"code": "no_group", "message": "no group"}}),
        (200, {"ETag": '"' + "0" * 64 + '"'}, None),  # a body that does not match its ETag
    ]

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            return

        def do_GET(self) -> None:
            status, headers, body = answers.pop(0)
            data = json.dumps(body).encode() if body is not None else b"receivers: {}\n"
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    client = AgentClient(f"http://127.0.0.1:{server.server_address[1]}", timeout=5)
    try:
        with pytest.raises(ServerUnavailable) as busy:
            client.fetch_config("ag_1", "tok", None)
        assert busy.value.retry_after == 7.0
        with pytest.raises(ServerRefused) as refused:
            client.fetch_config("ag_1", "tok", None)
        assert (refused.value.status, refused.value.code) == (404, "no_group")
        mismatched = client.fetch_config("ag_1", "tok", None)
        assert mismatched is not None and mismatched.hash_mismatch
        # Without trusted keys the agent retries later; with them it refuses it as untrusted.
        from agent.trust import TrustGate
        from schemas.signing import Untrusted

        with pytest.raises(ServerUnavailable, match="does not match"):
            TrustGate({}, {}).check(mismatched)
        with pytest.raises(Untrusted, match="is not the announced"):
            TrustGate({"0" * 16: None}, {}).check(mismatched)  # type: ignore[dict-item]
    finally:
        client.close()
        server.shutdown()
        server.server_close()


def test_collector_log_is_trimmed_in_place(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from agent import supervisor

    monkeypatch.setattr(supervisor, "LOG_ROTATE_BYTES", 100)
    log = tmp_path / "collector.log"
    process = supervisor.CollectorProcess(Path("/bin/true"), tmp_path / "c.yaml", {}, log)
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND)  # as the collector holds it
    os.write(fd, b"x" * 150)
    process.trim_log()
    os.write(fd, b"after\n")
    os.close(fd)
    assert log.read_bytes() == b"after\n"
    assert (tmp_path / "collector.log.1").read_bytes() == b"x" * 150
    assert process.log_since(0) == "after"


def test_agent_loop_honours_retry_after_on_registration(tmp_path: Path, collector_bin: Path) -> None:
    """A busy server (503 + Retry-After: 3) on 127.0.0.1: the next attempt is scheduled 3 s out."""
    import threading
    import time
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from agent.runner import Agent
    from agent.settings import AgentSettings

    hits: list[str] = []

    class Busy(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            return

        def do_POST(self) -> None:
            hits.append(self.path)
            self.rfile.read(int(self.headers.get("Content-Length", "0")))
            body = b'{"error": {"code": "busy", "message": "try later"}}'
            self.send_response(503)
            self.send_header("Retry-After", "3")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Busy)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    settings = AgentSettings(
        server=f"http://127.0.0.1:{server.server_address[1]}",
        enroll_token="t",
        collector=collector_bin,
        config_path=tmp_path / "c.yaml",
        state_dir=tmp_path / "state",
        backoff_initial_s=0.1,
    )
    agent = Agent(settings, CollectorRegistry())
    try:
        before = time.monotonic()
        agent.server_cycle()
        assert hits == ["/api/agent/v1/agents"] and agent.agent_id is None
        assert 2.9 <= agent.next_server_at - before <= 3.5  # not the 0.1 s backoff
    finally:
        agent.close()
        server.shutdown()
        server.server_close()
