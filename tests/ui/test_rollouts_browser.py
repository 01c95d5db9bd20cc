"""The Rollouts page in a real browser (Playwright driving Debian's headless Chromium).

The server is the real app (`create_app`, SQLite store) served over real HTTP on 127.0.0.1 by
werkzeug in a thread, seeded by the real rollout controller on a test clock (the World of
tests/rollouts/test_controller.py: agents registered and reporting through the agent API, metrics
rows in a real DuckDB file): one rollout rolled back by a failing canary, one running in its analysis
step with a passing measurement. No controller runs while the browser looks, so what the page shows
is what was seeded, and what the buttons change is what the test checks in the store.

The page shows the steps (done/current/pending), the agents per revision, each check's value against
its threshold, the rollback's reason and evidence; an operator pauses, resumes, promotes and aborts
(each through the confirm page, audited); a viewer sees no buttons and a POST from its session is
refused. A screenshot of each state goes to test-artifacts/."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from werkzeug.serving import BaseWSGIServer, make_server

from tests.rollouts.test_controller import World
from tests.ui.conftest import csrf_of
from tests.ui.test_browser import CHROMIUM, CHROMIUM_ARGS
from tests.webui.helpers import sha

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture
def seeded(tmp_path: Path) -> Iterator[tuple[World, str, dict[str, int]]]:
    w = World(tmp_path, None)
    # rollout 1: v2 breaks the canary's exporter; its measurement fails and everything rolls back
    w.publish(1, None, "v1")
    canary = w.register(1, {"ring": "canary", "tier": "edge"}, "c")
    edge = w.register(2, {"tier": "edge"}, "e")
    w.sync(canary + edge)
    w.publish(2, 1, "v2-broken")
    w.tick()
    w.sync(canary, sent=0.0, failed=50.0)
    w.sync(edge)
    broken = w.tick(6)
    assert broken is not None and broken.state == "rolled_back"
    w.sync(canary)  # the canary runs v1 again
    # rollout 2: v3 moved the canary group and passed one measurement; now in its analysis step
    w.publish(3, 2, "v3")
    running = w.tick()
    assert running is not None and running.state == "progressing" and running.step == 1
    w.sync(canary + edge)
    running = w.tick(6)
    assert running is not None and running.state == "progressing" and running.step == 1
    assert [m.verdict for m in w.store.get_rollout(running.id).measurements] == ["pass"]
    server: BaseWSGIServer = make_server("127.0.0.1", 0, w.srv.app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield w, f"http://127.0.0.1:{server.server_port}", {"broken": broken.id, "running": running.id}
    finally:
        server.shutdown()
        thread.join(timeout=10)
        server.server_close()
        w.close()


def test_rollouts_page_in_a_browser(seeded: tuple[World, str, dict[str, int]], artifacts_dir: Path) -> None:
    from playwright.sync_api import Page, sync_playwright

    w, base, ids = seeded
    operator = w.srv.create_token("operator", "olga")
    viewer = w.srv.create_token("viewer", "vera")
    running, broken = ids["running"], ids["broken"]

    def login(page: Page, token: str) -> None:
        page.goto(base + "/login")
        page.fill("#token", token)
        page.click("button[type=submit]")
        page.wait_for_selector("nav")

    def act(page: Page, action: str) -> None:
        """Click the action's button, then Yes on the confirm page; back on the rollout."""
        page.click(f"#rollout-{action}")
        page.wait_for_selector("#confirm-yes")
        assert f"{action.capitalize()} rollout {running}" in (page.locator("h1").text_content() or "")
        page.click("#confirm-yes")
        page.wait_for_selector(".flash")
        flash = page.locator(".flash").first
        assert "ok" in (flash.get_attribute("class") or ""), flash.text_content()
        assert f"Rollout {running}: {action} done." in (flash.text_content() or "")

    def cells(page: Page, selector: str) -> list[list[str]]:
        rows = page.locator(f"{selector} tbody tr")
        return [
            [(c.text_content() or "").strip() for c in rows.nth(i).locator("td").all()]
            for i in range(rows.count())
        ]

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            # --- an operator ---------------------------------------------------------------------
            ctx = browser.new_context(viewport={"width": 1400, "height": 1000})
            page = ctx.new_page()
            page.set_default_timeout(15000)
            login(page, operator)
            page.goto(base + "/rollouts")
            # the list: newest first, both rollouts with their state
            listing = cells(page, "table.rollouts")
            assert [(r[0], r[3]) for r in listing] == [
                (str(running), "progressing"),
                (str(broken), "rolled_back"),
            ]
            assert listing[0][4] == "2/4 analysis 30s"
            # the running one is shown: its steps, done / current / pending
            section = page.locator(f"section#rollout-{running}")
            assert section.count() == 1
            steps = page.locator("ol.steps li")
            assert [steps.nth(i).get_attribute("class") for i in range(steps.count())] == [
                "step-done",
                "step-current",
                "step-pending",
                "step-pending",
            ]
            assert "group canary" in (steps.nth(0).text_content() or "")
            assert "50 % of each group" in (steps.nth(2).text_content() or "")
            # agents per revision: the canary group moved, edge still on the previous revision
            assert cells(page, "table.agents-per-revision") == [["canary", "1", "0"], ["edge", "0", "2"]]
            # each check's value against its threshold, with its verdict
            ratio = next(r for r in cells(page, "table.measurements") if "send_failure_ratio" in r)
            assert ratio[ratio.index("send_failure_ratio") + 1] == "0"
            assert ratio[ratio.index("send_failure_ratio") + 2].startswith("≤ 0.1")
            assert ratio[ratio.index("send_failure_ratio") + 2].endswith("pass")
            throughput = next(r for r in cells(page, "table.measurements") if "throughput" in r)
            assert throughput[throughput.index("throughput") + 1] == "1"  # same rate as the old agents
            assert throughput[throughput.index("throughput") + 2].startswith("≥ 0.5")
            assert page.locator("table.measurements tr.v-pass").count() == 3
            page.screenshot(path=str(artifacts_dir / "ui-rollout-running.png"), full_page=True)

            # the buttons work: pause, resume, promote (the analysis step skipped), abort
            act(page, "pause")
            assert w.store.rollout_row(running).state == "paused"
            assert "paused" in (section.locator("h2 .badge").text_content() or "")
            act(page, "resume")
            assert w.store.rollout_row(running).state == "progressing"
            act(page, "promote")
            row = w.store.rollout_row(running)
            assert row.state == "progressing" and row.step == 2
            assert page.locator("ol.steps li").nth(1).get_attribute("class") == "step-done"
            page.screenshot(path=str(artifacts_dir / "ui-rollout-promoted.png"), full_page=True)
            act(page, "abort")
            assert w.store.rollout_row(running).state == "aborted"
            assert page.locator("#rollout-pause").count() == 0  # finished: no more buttons
            audit = [(e.actor, e.action) for e in w.store.list_audit(limit=100).items]
            for action in ("pause", "resume", "promote", "abort"):
                assert ("olga", f"rollout.{action}") in audit
            assert {w.config(a)[0] for a in w.groups} == {sha(1)}  # every agent back on v1

            # the rolled-back one: the reason and the evidence that caused it, no buttons
            page.goto(f"{base}/rollouts?id={broken}")
            reason = page.locator("p.reason").text_content() or ""
            assert "send_failure_ratio 1 > 0.1" in reason, reason
            failed = page.locator("table.measurements tr.v-fail")
            assert failed.count() >= 1
            evidence = [(c.text_content() or "").strip() for c in failed.first.locator("td").all()]
            assert "send_failure_ratio" in evidence
            at = evidence.index("send_failure_ratio")
            assert evidence[at + 1] == "1" and evidence[at + 2].startswith("≤ 0.1")
            assert evidence[at + 2].endswith("fail")
            assert evidence[at + 3] == "50 items failed, 0 sent by 1 agents"  # what it was computed from
            # everyone is back on the previous revision
            assert cells(page, "table.agents-per-revision") == [["canary", "0", "1"], ["edge", "0", "2"]]
            assert page.locator("button[id^=rollout-]").count() == 0
            page.screenshot(path=str(artifacts_dir / "ui-rollout-rolled-back.png"), full_page=True)
            ctx.close()

            # --- a viewer: a rollout in progress, and no buttons ----------------------------------
            w.publish(4, 3, "v4")
            fresh = w.tick()
            assert fresh is not None and fresh.state == "progressing"
            ctx = browser.new_context()
            page = ctx.new_page()
            page.set_default_timeout(15000)
            login(page, viewer)
            page.goto(f"{base}/rollouts?id={fresh.id}")
            assert "progressing" in (page.locator(f"section#rollout-{fresh.id} h2").text_content() or "")
            assert page.locator("button[id^=rollout-]").count() == 0
            assert page.locator(".actions form").count() == 0
            # a POST from the viewer's own session (with its CSRF token) is refused
            token = csrf_of(page.content())
            refused = page.request.post(
                f"{base}/rollouts/{fresh.id}/pause",
                form={"csrf_token": token, "confirm": "yes"},
                max_redirects=0,
            )
            assert refused.status == 403
            page.screenshot(path=str(artifacts_dir / "ui-rollout-viewer.png"), full_page=True)
            ctx.close()
            assert w.store.rollout_row(fresh.id).state == "progressing"
            api = httpx.post(
                f"{base}/api/v1/rollouts/{fresh.id}/pause",
                headers={"Authorization": f"Bearer {viewer}"},
                timeout=10,
            )
            assert api.status_code == 403 and api.json()["error"]["code"] == "forbidden"
        finally:
            browser.close()
