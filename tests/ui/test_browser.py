"""The UI in a real browser (Playwright driving Debian's headless Chromium) against the REAL server
(`ctrltower server` with its metrics process), one REAL agent running the REAL collector, an
OTLP/HTTP sink and a log generator: log in, find the agent, open its charts (the logs chart marks the
revision the agent applied), stop it and see the collector process stop, start it again, restart it
(a new collector process that ships logs), shut it down (the collector and the agent exit); a viewer
sees no buttons and the API refuses it. A screenshot of every page goes to test-artifacts/."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from demo.loggen import LogGenerator
from demo.sink import SinkHandle, start_sink
from tests.support.agent import AgentProcess, example_agent
from tests.support.procs import alive
from tests.support.ready import wait_until
from tests.support.server import ServerProcess
from tests.ui.seed import SHA1, SHA2, example_revision, invalid_run

pytestmark = [pytest.mark.browser, pytest.mark.collector, pytest.mark.slow]
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def wait_for(what: str, check: Callable[[], object], timeout: float = 60.0) -> object:
    """wait_until, taking a failed or half-ready answer (HTTP error, missing key, bad JSON) as not yet."""
    return wait_until(
        check, timeout, interval=0.25, what=what, ignore=(httpx.HTTPError, KeyError, ValueError)
    )


@pytest.fixture
def fleet(tmp_path: Path, collector_bin: Path) -> Iterator[dict[str, object]]:
    srv = ServerProcess(tmp_path / "server", poll_interval_s=0.5, metrics=True, metrics_interval_s=0.5)
    sink = start_sink("127.0.0.1", 0)
    log_dir = tmp_path / "app-logs"
    gen = LogGenerator([log_dir], rate=40.0)
    agent: AgentProcess | None = None
    with srv:
        try:
            reconciler = srv.create_token("reconciler")
            with srv.client(reconciler) as api:
                for sha, previous, tweak in ((SHA1, None, ""), (SHA2, SHA1, "second revision")):
                    body = example_revision(sha, previous, tweak=tweak).model_dump(mode="json", by_alias=True)
                    assert api.post("/api/v1/revisions", json=body).status_code in (200, 201)
                run = invalid_run(datetime.now(UTC))
                assert api.post("/api/v1/reconcile-runs", json=run.model_dump(mode="json")).status_code < 300
            log_dir.mkdir()
            agent = example_agent(
                srv.base_url, srv.enroll_token, collector_bin, tmp_path,
                zone="browser", log_dir=log_dir, endpoint=sink.endpoint,
            ).start()  # fmt: skip
            gen.start()
            yield {"srv": srv, "agent": agent, "sink": sink, "log": agent.log_path}
        finally:
            gen.stop()
            if agent is not None:
                agent.stop()
            sink.close()


def test_browser_operator_stops_and_starts_a_real_collector(
    fleet: dict[str, object], artifacts_dir: Path
) -> None:
    from playwright.sync_api import sync_playwright

    srv = fleet["srv"]
    agent = fleet["agent"]
    sink = fleet["sink"]
    assert isinstance(srv, ServerProcess) and isinstance(agent, AgentProcess)
    assert isinstance(sink, SinkHandle)
    admin = srv.admin_token
    operator = srv.create_token("operator")
    viewer = srv.create_token("viewer")
    headers = {"Authorization": f"Bearer {admin}"}

    def agent_view() -> dict[str, object]:
        items = httpx.get(f"{srv.base_url}/api/v1/agents", headers=headers, timeout=5).json()["items"]
        return items[0] if items else {}

    view = wait_for(
        "the agent to be Synced", lambda: (a := agent_view()).get("sync_status") == "Synced" and a
    )
    assert isinstance(view, dict)
    agent_id = str(view["id"])
    wait_for("a collector process", lambda: agent.collector_pids())
    # wait until the metrics process has a log rate for it, so the charts have data
    wait_for(
        "a non-zero log rate",
        lambda: httpx.get(
            f"{srv.base_url}/api/v1/metrics/latest", params={"agents": agent_id}, headers=headers, timeout=5
        ).json()["agents"][agent_id]["logs_in"],
    )

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)

        def logged_in(token: str, **context: Any) -> tuple[Any, Any]:
            """A new browser session, logged in with `token` through the login form: (context, page)."""
            ctx = browser.new_context(**context)
            page = ctx.new_page()
            page.goto(srv.base_url + "/login")
            page.fill("#token", token)
            page.click("button[type=submit]")
            return ctx, page

        try:
            ctx = browser.new_context(viewport={"width": 1400, "height": 1000})
            page = ctx.new_page()
            page.set_default_timeout(15000)
            page.goto(srv.base_url + "/")
            assert "/login" in page.url
            page.screenshot(path=str(artifacts_dir / "ui-login.png"))
            page.fill("#token", operator)
            page.click("button[type=submit]")
            page.wait_for_selector("table.fleet")
            # find the agent with the search box
            page.fill("input[name=q]", "browser-edge")
            page.click("form.filters button[type=submit]")
            page.wait_for_selector(f'tr[data-agent="{agent_id}"]')
            assert page.locator("tr[data-agent]").count() == 1
            page.wait_for_function(
                "(id) => { const c = document.querySelector("
                "`tr[data-agent='${id}'] td[data-metric=logs_in]`);"
                " return c && c.textContent.trim() !== '—'; }",
                arg=agent_id,
            )
            page.screenshot(path=str(artifacts_dir / "ui-fleet.png"), full_page=True)
            page.click(f'tr[data-agent="{agent_id}"] a')
            page.wait_for_selector("img.chart")
            page.click("a:text-is('15m')")
            assert page.locator("img.chart").count() == 6
            # every chart image loaded, and the logs chart draws a real line from scraped metrics
            page.wait_for_function(
                "() => [...document.querySelectorAll('img.chart')]"
                ".every(i => i.complete && i.naturalWidth > 0)"
            )
            logs_src = page.locator("img.chart").nth(2).get_attribute("src")
            assert logs_src
            logs_svg = page.request.get(srv.base_url + logs_src).text()
            assert 'class="series" data-series="logs_in"' in logs_svg, logs_svg[:500]
            # the chart marks the revision this agent applied (its effective revision), nothing else
            applied = str(agent_view()["effective_revision"])[:7]
            assert applied == SHA2[:7]
            assert f"<title>revision {applied} applied at " in logs_svg, logs_svg[:2000]
            assert f"<title>revision {SHA1[:7]} applied" not in logs_svg  # never applied by this agent
            page.screenshot(path=str(artifacts_dir / "ui-agent.png"), full_page=True)

            # stop: confirm in the dialog, then the real collector process goes away
            before = agent.collector_pids()
            assert before
            page.once("dialog", lambda d: d.accept())
            page.click("button[data-action=stop]")
            page.wait_for_selector(".flash.ok")
            wait_for("the agent to report stopped", lambda: agent_view().get("run_state") == "stopped")
            wait_for("the collector process to exit", lambda: not any(alive(p) for p in before))
            assert not agent.collector_pids()
            page.reload()
            page.wait_for_selector("#run-state.s-stopped")
            page.screenshot(path=str(artifacts_dir / "ui-agent-stopped.png"), full_page=True)

            # dismissing the dialog queues nothing
            page.once("dialog", lambda d: d.dismiss())
            page.click("button[data-action=restart]")
            page.wait_for_timeout(300)
            commands = httpx.get(
                f"{srv.base_url}/api/v1/agents/{agent_id}/commands", headers=headers, timeout=5
            ).json()["items"]
            assert [c["action"] for c in commands] == ["stop"]

            page.once("dialog", lambda d: d.accept())
            page.click("button[data-action=start]")
            page.wait_for_selector(".flash.ok")
            wait_for("the agent to report running", lambda: agent_view().get("run_state") == "running")
            after = wait_for("a new collector process", lambda: agent.collector_pids())
            assert isinstance(after, set) and not (after & before)

            # restart: the running collector is replaced by a new process, which keeps shipping logs
            shipped = sink.counts()["logs"]
            page.once("dialog", lambda d: d.accept())
            page.click("button[data-action=restart]")
            page.wait_for_selector(".flash.ok")
            wait_for("the old collector to exit", lambda: not any(alive(p) for p in after))
            restarted = wait_for("the restarted collector", lambda: agent.collector_pids())
            assert isinstance(restarted, set) and not (restarted & after)
            wait_for("the agent to report running", lambda: agent_view().get("run_state") == "running")
            wait_for(
                "logs shipped by the restarted collector",
                lambda: sink.counts()["logs"] > shipped,
            )

            # the other pages, with a screenshot each
            page.goto(srv.base_url + "/pipelines")
            page.screenshot(path=str(artifacts_dir / "ui-pipelines.png"), full_page=True)
            page.goto(srv.base_url + "/pipelines/gateway-traces")
            page.wait_for_selector("svg.pipeline-graph")
            node = page.locator("svg.pipeline-graph g.node").first
            node_id = node.get_attribute("data-node")
            node.click()
            panel = page.locator(".node-config")
            panel.wait_for(state="visible")
            assert node_id and node_id in (panel.locator(".node-title").text_content() or "")
            page.screenshot(path=str(artifacts_dir / "ui-pipeline-graph.png"), full_page=True)
            page.goto(srv.base_url + "/groups?group=edge")
            page.wait_for_selector("#group-diff")
            assert "+# second revision" in (page.locator("#group-diff").text_content() or "")
            page.screenshot(path=str(artifacts_dir / "ui-groups.png"), full_page=True)
            page.goto(srv.base_url + "/runs")
            assert "pipelines/app-logs.yaml:12:5" in (page.locator("table.runs").text_content() or "")
            page.screenshot(path=str(artifacts_dir / "ui-runs.png"), full_page=True)
            assert page.goto(srv.base_url + "/tokens").status == 403  # operators are not admins
            ctx.close()

            # admin: tokens page
            ctx, page = logged_in(admin, viewport={"width": 1400, "height": 900})
            page.goto(srv.base_url + "/tokens")
            page.fill("input[name=name]", "browser-made")
            page.select_option("select[name=role]", "viewer")
            page.click("form.filters button[type=submit]")
            page.wait_for_selector("#new-secret")
            page.screenshot(path=str(artifacts_dir / "ui-tokens.png"), full_page=True)
            ctx.close()

            # viewer: sees the agent, no buttons; the API refuses a command anyway
            ctx, page = logged_in(viewer)
            page.goto(f"{srv.base_url}/agents/{agent_id}")
            page.wait_for_selector("img.chart")
            assert page.locator("button[data-action]").count() == 0
            assert page.locator("#agent-actions").count() == 0
            page.screenshot(path=str(artifacts_dir / "ui-agent-viewer.png"), full_page=True)
            ctx.close()
            refused = httpx.post(
                f"{srv.base_url}/api/v1/agents/{agent_id}/commands",
                json={"action": "stop"},
                headers={"Authorization": f"Bearer {viewer}"},
                timeout=5,
            )
            assert refused.status_code == 403 and refused.json()["error"]["code"] == "forbidden"
            assert agent_view().get("run_state") == "running"

            # shutdown (operator): the collector stops, then the agent process itself exits
            ctx, page = logged_in(operator)
            page.goto(f"{srv.base_url}/agents/{agent_id}")
            running = agent.collector_pids()
            assert running
            page.once("dialog", lambda d: d.accept())
            page.click("button[data-action=shutdown]")
            page.wait_for_selector(".flash.ok")
            wait_for("the collector to exit", lambda: not any(alive(p) for p in running))
            wait_for("the agent process to exit", lambda: not agent.running())
            assert agent.proc is not None and agent.proc.returncode == 0, agent.proc.returncode
            commands = httpx.get(
                f"{srv.base_url}/api/v1/agents/{agent_id}/commands", headers=headers, timeout=5
            ).json()["items"]
            done = {c["action"]: c["state"] for c in commands}
            assert done.get("restart") == "done" and done.get("shutdown") == "done", commands
            ctx.close()
        finally:
            browser.close()
