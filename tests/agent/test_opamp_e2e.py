"""End to end, one fleet: an HTTP-protocol agent and an OpAMP agent (`ctrltower agent --protocol opamp`),
both subprocesses on an agent-only host (server dependencies blocked), both running the real collector
shipping to demo/sink.py, both managed by the real server: Synced on the fleet page (its HTML, and in
headless Chromium), a local edit seen as drift, restart over OpAMP from the agent page's only button, a
rejected revision reported as ApplyFailed while the last good config keeps running."""

from __future__ import annotations

import re
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from demo.sink import SinkHandle, start_sink
from schemas.api import AgentView, GroupRevision, RevisionPublish
from schemas.common import config_hash
from tests.agent.helpers import collector_config, wait_until, write_lines
from tests.support.agent import AgentProcess
from tests.support.server import ServerProcess, auth

pytestmark = [pytest.mark.collector, pytest.mark.slow, pytest.mark.browser]
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]


@dataclass
class Host:
    """One agent subprocess with its own config path, state dir and log directory."""

    name: str
    protocol: str
    root: Path
    agent: AgentProcess | None = None

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    def start(self, srv: ServerProcess, collector_bin: Path) -> None:
        self.logs.mkdir(parents=True, exist_ok=True)
        self.agent = AgentProcess(
            srv.base_url,
            srv.enroll_token,
            collector_bin,
            self.root,
            protocol=self.protocol,
            labels=f"role=edge,proto={self.protocol}",
            hostname=self.name,
            health_timeout="5s",
            collector_env={"APP_LOG_DIR": str(self.logs)},
        ).start()

    def log_text(self) -> str:
        return self.agent.log_text(6000) if self.agent is not None else ""

    def collector_pid(self) -> int | None:
        assert self.agent is not None
        return self.agent.collector_pid()

    def stop(self) -> None:
        if self.agent is not None:
            self.agent.stop()


@dataclass
class MixedFleet:
    srv: ServerProcess
    sink: SinkHandle
    hosts: dict[str, Host]
    admin: str
    head: str | None = None
    n: int = 0

    def publish(self, yaml_text: str) -> str:
        self.n += 1
        sha = f"{self.n:07x}0ba3c"
        body = RevisionPublish(
            commit_sha=sha,
            previous_commit_sha=self.head,
            groups=[
                GroupRevision(
                    name="edge",
                    selector={"role": "edge"},
                    priority=0,
                    config=yaml_text,
                    config_hash=config_hash(yaml_text),
                )
            ],
            pipelines=[],
        )
        r = httpx.post(
            f"{self.srv.base_url}/api/v1/revisions",
            content=body.model_dump_json(by_alias=True),
            headers={**auth(self.admin), "Content-Type": "application/json"},
            timeout=10,
        )
        assert r.status_code in (200, 201), r.text
        self.head = sha
        return sha

    def views(self) -> dict[str, AgentView]:
        r = httpx.get(f"{self.srv.base_url}/api/v1/agents", headers=auth(self.admin), timeout=10)
        return {v.hostname: v for v in (AgentView.model_validate(i) for i in r.json()["items"])}

    def wait(self, what: str, check: object, timeout: float = 40) -> dict[str, AgentView]:
        def ok() -> dict[str, AgentView] | None:
            views = self.views()
            return views if check(views) else None  # type: ignore[operator]

        try:
            return wait_until(ok, timeout, interval=0.2, what=what)
        except AssertionError as exc:
            logs = "\n".join(f"--- {h.name}\n{h.log_text()}" for h in self.hosts.values())
            raise AssertionError(f"{exc}\nviews: {self.views()}\n{logs}") from None


@pytest.fixture
def mixed(tmp_path: Path, collector_bin: Path) -> Iterator[MixedFleet]:
    with start_sink("127.0.0.1", 0) as sink, ServerProcess(tmp_path / "server", poll_interval_s=0.5) as srv:
        hosts = {p: Host(f"{p}-host", p, tmp_path / p) for p in ("http", "opamp")}
        fleet = MixedFleet(srv, sink, hosts, srv.admin_token)
        try:
            yield fleet
        finally:
            for host in hosts.values():
                host.stop()


def fleet_page(srv: ServerProcess) -> str:
    """The fleet page as a logged-in operator's browser gets it (session cookie, CSRF-checked login)."""
    with httpx.Client(base_url=srv.base_url, timeout=10) as ui:
        login = ui.get("/login")
        match = CSRF.search(login.text)
        assert match, login.text[:500]
        token = srv.create_token("operator")
        r = ui.post("/login", data={"token": token, "csrf_token": match.group(1), "next": "/"})
        assert r.status_code == 302, r.text[:500]
        page = ui.get("/")
        assert page.status_code == 200
        return page.text


def click_restart_in_chromium(srv: ServerProcess, agent_id: str) -> list[str]:
    """Log in as an operator in headless Chromium, check the fleet page, open the OpAMP agent's page and
    restart it with its button (confirming the dialog). Returns the action buttons the page offered."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.set_default_timeout(15000)
            page.goto(srv.base_url + "/login")
            page.fill("#token", srv.create_token("operator"))
            page.click("button[type=submit]")
            page.wait_for_selector("table.fleet")
            synced = page.locator('tr[data-agent] [data-sync="Synced"]').count()
            marked = page.locator('tr[data-agent] [data-protocol="opamp"]').count()
            assert (synced, marked) == (2, 1), (synced, marked)
            page.click(f'tr[data-agent="{agent_id}"] a')
            page.wait_for_selector("#opamp")
            found = page.locator("button[data-action]").all()
            offered = [b.get_attribute("data-action") or "" for b in found]
            page.once("dialog", lambda d: d.accept())
            page.click("button[data-action=restart]")
            page.wait_for_selector("text=Queued restart")
            return offered
        finally:
            browser.close()


def row_of(html: str, hostname: str) -> str:
    rows = re.findall(r"<tr data-agent=.*?</tr>", html, re.S)
    found = [r for r in rows if f">{hostname}</a>" in r]
    assert len(found) == 1, f"{hostname} not on the fleet page"
    return found[0]


def test_http_and_opamp_agents_in_one_fleet(mixed: MixedFleet, collector_bin: Path) -> None:
    good = collector_config("${env:APP_LOG_DIR}/*.log", mixed.sink.endpoint)
    mixed.publish(good)
    for host in mixed.hosts.values():
        host.start(mixed.srv, collector_bin)
    both_synced = mixed.wait(
        "both agents Synced",
        lambda v: len(v) == 2 and all(x.sync_status == "Synced" for x in v.values()),
    )
    opamp_view = both_synced["opamp-host"]
    assert opamp_view.reported_hash == config_hash(good) == both_synced["http-host"].reported_hash
    assert opamp_view.labels["proto"] == "opamp" and opamp_view.labels["service.name"]
    assert opamp_view.collector_version and opamp_view.agent_version

    # both real collectors run the config: lines written on each host reach the sink
    hosts = list(mixed.hosts.values())
    for host in hosts:
        write_lines(host.logs / "app.log", host.name, 20)

    def shipped(hostname: str) -> int:
        return len({b for b in mixed.sink.bodies() if b.startswith(hostname + " ")})

    try:
        wait_until(lambda: shipped("http-host") == shipped("opamp-host") == 20, 60, interval=0.2)
    except AssertionError as exc:
        logs = {
            h.name: (h.root / "state" / "collector.log").read_text(errors="replace")[-3000:] for h in hosts
        }
        counts = f"sink {mixed.sink.counts()}, http {shipped('http-host')}, opamp {shipped('opamp-host')}"
        raise AssertionError(f"{exc}: {counts}\n{logs}") from None

    # the fleet page shows both, Synced (HTML-level: the page a browser gets)
    html = fleet_page(mixed.srv)
    for hostname in ("http-host", "opamp-host"):
        assert 'data-sync="Synced"' in row_of(html, hostname)
    assert 'data-protocol="opamp"' in row_of(html, "opamp-host")
    assert 'data-protocol="opamp"' not in row_of(html, "http-host")

    # the OpAMP agent kept its own token, readable by its user only
    token_file = mixed.hosts["opamp"].root / "state" / "opamp_token"
    assert token_file.read_text().startswith("cta_")
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600

    # a local edit: the agent undoes it and reports what it found as the effective config, so the
    # server records the drift (and its end: Synced again)
    config_file = mixed.hosts["opamp"].root / "collector.yaml"
    config_file.write_text(good + "# edited by hand\n")

    def drift_seen() -> bool:
        r = httpx.get(
            f"{mixed.srv.base_url}/api/v1/agents/{opamp_view.id}/events",
            params={"kind": "drift"},
            headers=auth(mixed.admin),
            timeout=10,
        )
        return bool(r.json()["items"])

    wait_until(drift_seen, 40, interval=0.2, what=f"drift event\n{mixed.hosts['opamp'].log_text()}")
    assert config_file.read_text() == good
    mixed.wait("Synced after the drift", lambda v: v["opamp-host"].sync_status == "Synced")

    # restart over OpAMP from the UI in a real browser: the agent page offers only restart (what OpAMP
    # can carry), the click queues it, the agent gets a new collector process and the command is done
    opamp = mixed.hosts["opamp"]
    before = opamp.collector_pid()
    assert before is not None
    buttons = click_restart_in_chromium(mixed.srv, opamp_view.id)
    commands = [b for b in buttons if b in ("start", "stop", "restart", "shutdown")]
    assert commands == ["restart"], buttons  # (other buttons, e.g. approve-reregistration, are not commands)
    items = httpx.get(
        f"{mixed.srv.base_url}/api/v1/agents/{opamp_view.id}/commands", headers=auth(mixed.admin), timeout=10
    ).json()["items"]
    assert [c["action"] for c in items] == ["restart"]
    command_id = items[0]["id"]

    def restarted() -> bool:
        items = httpx.get(
            f"{mixed.srv.base_url}/api/v1/agents/{opamp_view.id}/commands",
            headers=auth(mixed.admin),
            timeout=10,
        ).json()["items"]
        done = any(c["id"] == command_id and c["state"] == "done" for c in items)
        pid = opamp.collector_pid()
        return done and pid is not None and pid != before

    wait_until(restarted, 40, interval=0.2, what=f"restart done\n{opamp.log_text()}")

    # a revision the collector rejects: ApplyFailed on both, the last good config keeps running
    bad = collector_config("${env:APP_LOG_DIR}/*.log", mixed.sink.endpoint, extra="    no_such_key: 1\n")
    mixed.publish(bad)
    failed = mixed.wait(
        "both ApplyFailed", lambda v: all(x.sync_status == "ApplyFailed" for x in v.values()) and len(v) == 2
    )
    assert failed["opamp-host"].reported_hash == config_hash(good)
    assert failed["opamp-host"].last_apply is not None and failed["opamp-host"].last_apply.error
    assert (opamp.root / "collector.yaml").read_text() == good
    assert opamp.collector_pid() is not None

    # fixed in the next revision: both Synced again
    fixed = good + "# fixed\n"
    mixed.publish(fixed)
    mixed.wait("both Synced again", lambda v: all(x.sync_status == "Synced" for x in v.values()))
