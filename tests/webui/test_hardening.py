"""Issue 10 on the server's side: each attack as an attacker would try it, now harmless.

- Scraper SSRF: an enroll-token holder announces `metrics_url=http://127.0.0.1:PORT/...` to make the
  metrics process GET a service on the server's loopback and show its bytes in scrape health.
- Unbounded agent input: 20,000 labels, a 4 MB revision string, events dated in the future.
"""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.agent.helpers import wait_until
from tests.support.server import InProcessServer, ServerProcess, auth
from tests.webui.conftest import Clock
from tests.webui.helpers import iso, registration

# --- scraper SSRF ------------------------------------------------------------------------------------


class Secret:
    """A service that must stay private: answers every GET with secret bytes and counts the hits."""

    BODY = b"TOP-SECRET internal admin page\n"

    def __init__(self, host: str = "127.0.0.1") -> None:
        hits: list[str] = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                hits.append(self.path)
                self.send_response(200)
                self.send_header("Content-Length", str(len(Secret.BODY)))
                self.end_headers()
                self.wfile.write(Secret.BODY)

            def log_message(self, *args: Any) -> None:
                pass

        self.hits = hits
        self.server = http.server.ThreadingHTTPServer((host, 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def secret() -> Iterator[Secret]:
    s = Secret()
    yield s
    s.close()


def _register_from(srv: InProcessServer, peer: str, url: str, instance: str = "inst-ssrf-01") -> Any:
    return srv.client.post(
        "/api/agent/v1/agents",
        json=registration(instance, metrics_url=url),
        headers=srv.auth(srv.enroll_token),
        environ_base={"REMOTE_ADDR": peer},
    )


def test_announced_metrics_host_is_replaced_by_the_connections_address(tmp_path: Path) -> None:
    srv = InProcessServer(tmp_path, scrape_allow=("192.0.2.0/24", "metrics.example.net"))
    try:
        cases = [
            # (connection from, announced, scraped)
            ("10.9.8.7", "http://127.0.0.1:8500/metrics", "http://10.9.8.7:8500/metrics"),
            ("10.9.8.7", "http://169.254.169.254:80/metrics", "http://10.9.8.7:80/metrics"),
            ("10.9.8.7", "http://10.9.8.7:9464/metrics", "http://10.9.8.7:9464/metrics"),
            ("10.9.8.7", "http://192.0.2.10:9464/metrics", "http://192.0.2.10:9464/metrics"),  # allow-listed
            (
                "10.9.8.7",
                "http://Metrics.Example.NET:9464/metrics",
                "http://metrics.example.net:9464/metrics",  # urlsplit lower-cases the host
            ),
            ("::ffff:10.1.1.1", "http://localhost:9/metrics", "http://10.1.1.1:9/metrics"),
            ("2001:db8::5", "http://[::1]:9464/metrics", "http://[2001:db8::5]:9464/metrics"),
        ]
        for i, (peer, announced, scraped) in enumerate(cases):
            r = _register_from(srv, peer, announced, f"inst-ssrf-{i:02d}")
            assert r.status_code == 200, r.get_json()
            agent = srv.store.get_agent(r.get_json()["agent_id"])
            assert agent.metrics_url == scraped, (peer, announced)
        for bad in (
            "http://127.0.0.1:8500/admin",  # only the agent's metrics path is scraped
            "http://127.0.0.1:8500/metrics?x=1",
            "https://127.0.0.1:8500/metrics",
            "http://user:pw@127.0.0.1:8500/metrics",
            "file:///etc/passwd",
            "http://127.0.0.1:99999/metrics",
        ):
            r = _register_from(srv, "10.9.8.7", bad, "inst-ssrf-bad")
            assert r.status_code == 422, bad
            assert r.get_json()["error"]["code"] == "metrics_url_refused", r.get_json()
        assert srv.store.list_agents().page.total == len(cases)  # nothing stored for refused ones
    finally:
        srv.close()


def _health(srv: ServerProcess, agent_id: str) -> dict[str, Any] | None:
    r = httpx.get(
        f"{srv.base_url}/api/v1/metrics/health", params={"agents": agent_id}, headers=auth(srv.admin_token)
    )
    if r.status_code != 200:
        return None
    entry: dict[str, Any] | None = r.json()["agents"].get(agent_id)
    return entry if entry and entry.get("last_attempt") else None


def test_scraper_ssrf_against_the_real_server(tmp_path: Path, secret: Secret) -> None:
    """The attacker connects from 127.0.0.2 (another host, as far as the server can tell) and points the
    scraper at a private service on the server's 127.0.0.1. The server scrapes 127.0.0.2 instead: the
    private service never sees a request, and scrape health shows no byte of any answer."""
    srv = ServerProcess(tmp_path / "srv", poll_interval_s=30, metrics=True, metrics_interval_s=0.3)
    with srv:
        srv.wait_metrics()
        attacker = httpx.Client(
            base_url=srv.base_url,
            transport=httpx.HTTPTransport(local_address="127.0.0.2"),
            headers=auth(srv.enroll_token),
            timeout=30,
        )
        with attacker:
            refused = attacker.post(
                "/api/agent/v1/agents",
                json=registration("inst-attacker-1", metrics_url=f"http://127.0.0.1:{secret.port}/admin"),
            )
            assert refused.status_code == 422 and refused.json()["error"]["code"] == "metrics_url_refused"
            r = attacker.post(
                "/api/agent/v1/agents",
                json=registration("inst-attacker-1", metrics_url=f"http://127.0.0.1:{secret.port}/metrics"),
            )
            assert r.status_code == 200, r.text
        agent_id = r.json()["agent_id"]
        with srv.client(srv.admin_token) as admin:
            stored = admin.get(f"/api/v1/agents/{agent_id}").json()["metrics_url"]
        assert stored == f"http://127.0.0.2:{secret.port}/metrics"
        health = wait_until(lambda: _health(srv, agent_id), 30, what="a scrape attempt")
        # and a second round, so a lucky timing cannot hide a hit
        first = health["last_attempt"]
        health = wait_until(
            lambda: (h := _health(srv, agent_id)) and h["last_attempt"] > first and h,
            30,
            what="a second scrape",
        )
        assert secret.hits == [], secret.hits
        assert health["last_error"] and "SECRET" not in str(health)

        # the metrics `step` reaches DuckDB as a bound value, capped: bad ones are a 400, never its error
        with srv.client(srv.admin_token) as admin:
            url = "/api/v1/metrics/query"
            for step in ("9" * 400, "inf", "1e9", "100000w", "-5", "nan", "0.1", "5 minutes"):
                r = admin.get(url, params={"agent": agent_id, "metric": "cpu", "start": "-1h", "step": step})
                assert r.status_code == 400, (step, r.status_code, r.text[:300])
                assert r.json()["error"]["code"] == "bad_request"
                assert "duckdb" not in r.text.lower() and "binder" not in r.text.lower(), r.text
            for step in ("60", "400d", "3600.5"):
                r = admin.get(url, params={"agent": agent_id, "metric": "cpu", "start": "-1h", "step": step})
                assert r.status_code == 200 and r.json()["step"] >= 60, (step, r.text[:300])


def test_failed_scrape_errors_never_quote_the_answer(tmp_path: Path) -> None:
    """Even a target the operator allow-listed, answering with something that is not an agent page,
    shows only what went wrong in scrape health, never its bytes."""
    import asyncio

    from metrics.fetch import FetchError, Target, fetch
    from metrics.parse import PageError, parse_page

    answers = [
        b"HTTP/1.1 200 OK\r\nContent-Length: 40\r\n\r\nctrltower_collector_up TOP-SECRET-VALUE\n",
        b"TOP-SECRET banner of some service\r\n\r\n",
        b"HTTP/1.1 200 TOP-SECRET\r\nContent-Length: x-TOP-SECRET\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Encoding: TOP-SECRET\r\n\r\n",
        b"HTTP/1.1 404 TOP-SECRET reason\r\nContent-Length: 0\r\n\r\n",
    ]

    async def run() -> list[str]:
        errors: list[str] = []
        for answer in answers:

            async def handle(
                r: asyncio.StreamReader, w: asyncio.StreamWriter, answer: bytes = answer
            ) -> None:
                await r.readuntil(b"\r\n\r\n")
                w.write(answer)
                await w.drain()
                w.close()

            server = await asyncio.start_server(handle, "127.0.0.1", 0)
            port = server.sockets[0].getsockname()[1]
            try:
                body = await fetch(
                    Target(f"http://127.0.0.1:{port}/metrics"), timeout_s=10, max_bytes=1 << 20
                )
                parse_page(body)
                errors.append("no error")
            except (FetchError, PageError) as exc:
                errors.append(str(exc))
            finally:
                server.close()
                await server.wait_closed()
        return errors

    errors = asyncio.run(run())
    assert len(errors) == len(answers) and "no error" not in errors, errors
    assert not any("SECRET" in e for e in errors), errors
    assert "HTTP 404" in errors


# --- unbounded agent input ---------------------------------------------------------------------------


@pytest.fixture
def isrv(tmp_path: Path, clock: Clock) -> Iterator[InProcessServer]:
    server = InProcessServer(tmp_path / "data", poll_interval_s=10.0, clock=clock)
    yield server
    server.close()


def test_oversized_agent_input_is_a_422_and_loses_nothing(isrv: InProcessServer, clock: Clock) -> None:
    enroll = isrv.auth(isrv.enroll_token)
    reg = isrv.client.post(
        "/api/agent/v1/agents", json=registration("inst-big-001", {"tier": "edge"}), headers=enroll
    )
    assert reg.status_code == 200
    agent_id, token = reg.get_json()["agent_id"], reg.get_json()["agent_token"]
    ok = isrv.client.post(
        f"/api/agent/v1/agents/{agent_id}/status",
        json={"collector_state": "running", "uptime_s": 5, "effective_revision": "a" * 40},
        headers=isrv.auth(token),
    )
    assert ok.status_code == 200
    before = isrv.store.get_agent(agent_id)

    many = {f"k{i}": "v" for i in range(20_000)}
    r = isrv.client.post("/api/agent/v1/agents", json=registration("inst-big-001", many), headers=enroll)
    assert r.status_code == 422 and r.get_json()["error"]["code"] == "validation_error"
    assert len(r.get_json()["error"]["details"]) <= 20
    huge_value = {"tier": "x" * 300}
    assert (
        isrv.client.post(
            "/api/agent/v1/agents", json=registration("inst-big-002", huge_value), headers=enroll
        ).status_code
        == 422
    )

    for report in (
        {"collector_state": "running", "uptime_s": 1, "effective_revision": "r" * (4 << 20)},
        {"collector_state": "running", "uptime_s": 1, "effective_config_hash": "h" * 1000},
        {"collector_state": "running", "uptime_s": 1e300},
        {
            "collector_state": "running",
            "uptime_s": 1,
            "drift_events": [{"at": iso(clock.now), "local_hash": None, "desired_hash": "d"}] * 101,
        },
        {
            "collector_state": "running",
            "uptime_s": 1,
            "last_apply": {"result": "applied", "config_hash": "c" * 129, "at": iso(clock.now)},
        },
    ):
        r = isrv.client.post(f"/api/agent/v1/agents/{agent_id}/status", json=report, headers=isrv.auth(token))
        assert r.status_code in (413, 422), (r.status_code, list(report))
        assert r.is_json and "error" in r.get_json()
    after = isrv.store.get_agent(agent_id)
    assert after == before  # nothing stored was lost or changed
    assert after.labels == {"tier": "edge"} and after.effective_revision == "a" * 40


def test_future_timestamps_are_clamped_to_server_time_and_pruned(isrv: InProcessServer, clock: Clock) -> None:
    enroll = isrv.auth(isrv.enroll_token)
    reg = isrv.client.post(
        "/api/agent/v1/agents", json=registration("inst-future-1"), headers=enroll
    ).get_json()
    year_2100 = iso(4_102_444_800.0)
    report = {
        "collector_state": "running",
        "uptime_s": 1,
        "last_apply": {"result": "applied", "config_hash": "c" * 64, "revision": "abc1234", "at": year_2100},
        "drift_events": [{"at": year_2100, "local_hash": None, "desired_hash": "c" * 64}],
    }
    r = isrv.client.post(
        f"/api/agent/v1/agents/{reg['agent_id']}/status", json=report, headers=isrv.auth(reg["agent_token"])
    )
    assert r.status_code == 200
    events = isrv.store.agent_events(reg["agent_id"]).items
    assert {e.kind for e in events} >= {"applied", "drift", "registered"}
    assert all(e.at.timestamp() <= clock.now for e in events), [(e.kind, e.at) for e in events]
    clock.advance(40 * 86400)  # past the 30-day retention: every event goes, the future-dated too
    isrv.store.prune(events_older_than_s=30 * 86400, runs_older_than_s=30 * 86400)
    assert isrv.store.agent_events(reg["agent_id"]).items == []
    assert time.time() < 4_102_444_800.0


# --- identity hijack and self-declared labels ----------------------------------------------------------


def _reg(srv: InProcessServer, token: str, instance: str, labels: dict[str, str], **extra: Any) -> Any:
    return srv.client.post(
        "/api/agent/v1/agents", json=registration(instance, labels, **extra), headers=srv.auth(token)
    )


def test_an_enroll_token_cannot_take_over_a_registered_instance(isrv: InProcessServer) -> None:
    victim = _reg(isrv, isrv.enroll_token, "inst-victim-1", {"tier": "edge"}).get_json()
    config_url = f"/api/agent/v1/agents/{victim['agent_id']}/config"
    # the attacker knows the instance id (the UI and the agent's /metrics show it) and has the enroll token
    r = _reg(isrv, isrv.enroll_token, "inst-victim-1", {"tier": "core"}, hostname="evil")
    assert r.status_code == 409 and r.get_json()["error"]["code"] == "instance_registered"
    wrong = _reg(isrv, isrv.enroll_token, "inst-victim-1", {"tier": "core"}, agent_token="cta_guess")
    assert wrong.status_code == 409
    view = isrv.store.get_agent(victim["agent_id"])
    assert view.hostname == "host-inst-victim-1" and view.labels == {"tier": "edge"}
    still = isrv.client.get(config_url, headers=isrv.auth(victim["agent_token"]))
    assert still.status_code == 404 and still.get_json()["error"]["code"] == "no_revision"  # not 401

    # the agent itself (after a restart) proves it with its current token: same id, new token
    again = _reg(
        isrv, isrv.enroll_token, "inst-victim-1", {"tier": "edge"}, agent_token=victim["agent_token"]
    )
    assert again.status_code == 200 and again.get_json()["agent_id"] == victim["agent_id"]
    assert isrv.client.get(config_url, headers=isrv.auth(victim["agent_token"])).status_code == 401

    # a host reinstalled without its state dir: an operator approves one re-registration (not a viewer)
    approve = f"/api/v1/agents/{victim['agent_id']}/approve-reregistration"
    assert isrv.client.post(approve, headers=isrv.auth(isrv.create_token("viewer"))).status_code == 403
    ok = isrv.client.post(approve, headers=isrv.auth(isrv.create_token("operator")))
    assert ok.status_code == 200 and ok.get_json()["agent_id"] == victim["agent_id"]
    assert _reg(isrv, isrv.enroll_token, "inst-victim-1", {"tier": "edge"}).status_code == 200
    assert _reg(isrv, isrv.enroll_token, "inst-victim-1", {"tier": "edge"}).status_code == 409  # used up
    actions = [a.action for a in isrv.store.list_audit().items]
    assert "agent.approve_reregistration" in actions
    missing = isrv.client.post(
        "/api/v1/agents/ag_nope/approve-reregistration", headers=isrv.auth(isrv.admin_token)
    )
    assert missing.status_code == 404


def test_a_scoped_enroll_token_registers_only_its_labels(isrv: InProcessServer, tmp_path: Path) -> None:
    admin = isrv.auth(isrv.admin_token)
    r = isrv.client.post(
        "/api/v1/tokens",
        json={"role": "enroll", "name": "edge", "labels": {"tier": ["edge"], "zone": ["*"]}},
        headers=admin,
    )
    assert r.status_code == 201, r.get_json()
    edge = r.get_json()["secret"]
    assert r.get_json()["token"]["labels"] == {"tier": ["edge"], "zone": ["*"]}
    assert _reg(isrv, edge, "inst-scope-01", {"tier": "edge", "zone": "eu-1"}).status_code == 200
    assert _reg(isrv, edge, "inst-scope-02", {"zone": "us-2"}).status_code == 200
    for labels in (
        {"tier": "core"},
        {"tier": "edge", "team": "payments"},
        {"tier": "edge", "zone": "a", "x": "y"},
    ):
        refused = _reg(isrv, edge, "inst-scope-03", labels)
        assert refused.status_code == 403, labels
        body = refused.get_json()["error"]
        assert body["code"] == "labels_out_of_scope" and body["details"]["allowed"] == {
            "tier": ["edge"],
            "zone": ["*"],
        }
    assert {a.instance_id for a in isrv.store.list_agents().items} == {"inst-scope-01", "inst-scope-02"}
    # an unscoped enroll token still registers anything; a scope on another role is refused
    assert _reg(isrv, isrv.enroll_token, "inst-scope-04", {"team": "payments"}).status_code == 200
    bad = isrv.client.post("/api/v1/tokens", json={"role": "viewer", "labels": {"a": ["b"]}}, headers=admin)
    assert bad.status_code == 422


def test_token_create_cli_with_labels(isrv: InProcessServer) -> None:
    from click.testing import CliRunner

    from ctrltower.cli import cli as main

    data_dir = str(isrv.settings.data_dir)
    runner = CliRunner()
    out = runner.invoke(
        main,
        [
            "token",
            "create",
            "--data-dir",
            data_dir,
            "--role",
            "enroll",
            "--labels",
            "tier=edge,tier=canary,zone=*",
        ],
    )
    assert out.exit_code == 0, out.output
    secret = out.output.strip().splitlines()[-1]
    assert _reg(isrv, secret, "inst-cli-0001", {"tier": "canary", "zone": "b"}).status_code == 200
    assert _reg(isrv, secret, "inst-cli-0002", {"tier": "core"}).status_code == 403
    listed = runner.invoke(main, ["token", "list", "--data-dir", data_dir])
    assert "[labels tier=edge,tier=canary,zone=*]" in listed.output
    for bad in (["--role", "viewer", "--labels", "a=b"], ["--role", "enroll", "--labels", "novalue"]):
        res = runner.invoke(main, ["token", "create", "--data-dir", data_dir, *bad])
        assert res.exit_code == 2 and "Traceback" not in res.output, res.output
