"""The UI's pages through Flask's test client on a real seeded store: login, roles, CSRF, every page,
filters, pagination, diffs, commands, tokens. (Browser behaviour is in test_browser.py.)"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Callable

from flask.testing import FlaskClient

from tests.ui.conftest import UiEnv, csrf_of, login
from tests.ui.seed import SHA1, SHA2


def test_pages_need_login_and_redirect_back(ui_env: UiEnv) -> None:
    client = ui_env.app.test_client()
    for path in ("/", "/pipelines", "/groups", "/runs", "/tokens", f"/agents/{ui_env.agent_ids[0]}"):
        response = client.get(path)
        assert response.status_code == 302
        assert response.headers["Location"].startswith("/login?next=")
    # a POST without a session is refused, not redirected (and nothing is queued)
    assert client.post(f"/agents/{ui_env.agent_ids[0]}/stop", data={"confirm": "yes"}).status_code == 401


def test_login_sets_hardened_cookie_and_logout_clears_it(ui_env: UiEnv) -> None:
    client = ui_env.app.test_client()
    page = client.get("/login?next=/runs")
    response = client.post(
        "/login", data={"token": ui_env.tokens["viewer"], "csrf_token": csrf_of(page.text), "next": "/runs"}
    )
    assert response.status_code == 302 and response.headers["Location"] == "/runs"
    cookie = response.headers["Set-Cookie"]
    assert cookie.startswith("ctrltower_session=")
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert ui_env.tokens["viewer"] not in cookie  # the token itself never goes into the cookie
    home = client.get("/")
    assert home.status_code == 200 and "viewer-user" in home.text
    # logout needs the CSRF token too
    assert client.post("/logout").status_code == 400
    assert client.post("/logout", data={"csrf_token": csrf_of(home.text)}).status_code == 302
    assert client.get("/").status_code == 302


def test_bad_tokens_and_roles_cannot_log_in(ui_env: UiEnv) -> None:
    client = ui_env.app.test_client()
    for token in ("nope", "", ui_env.tokens["enroll"], "x" * 5000):
        page = client.get("/login")
        response = client.post("/login", data={"token": token, "csrf_token": csrf_of(page.text)})
        assert response.status_code == 401
        assert "unknown, revoked, or may not use the UI" in response.text


def test_login_requires_csrf_and_rejects_open_redirect(ui_env: UiEnv) -> None:
    client = ui_env.app.test_client()
    assert client.post("/login", data={"token": ui_env.tokens["admin"]}).status_code == 400
    page = client.get("/login")
    response = client.post(
        "/login",
        data={"token": ui_env.tokens["admin"], "csrf_token": csrf_of(page.text), "next": "//evil.example/x"},
    )
    assert response.headers["Location"] == "/"


def test_revoking_a_token_ends_its_sessions(ui_env: UiEnv, client_as: Callable[[str], FlaskClient]) -> None:
    viewer = client_as("viewer")
    assert viewer.get("/").status_code == 200
    viewer_id = next(t.id for t in ui_env.store.list_tokens() if t.name == "viewer-user")
    admin = client_as("admin")
    page = admin.get("/tokens")
    assert (
        admin.post(f"/tokens/{viewer_id}/revoke", data={"csrf_token": csrf_of(page.text)}).status_code == 200
    )
    response = admin.post(
        f"/tokens/{viewer_id}/revoke", data={"csrf_token": csrf_of(page.text), "confirm": "yes"}
    )
    assert response.status_code == 302
    assert viewer.get("/").status_code == 302  # logged out


def test_fleet_lists_counts_filters_and_pages(ui_env: UiEnv, client_as: Callable[[str], FlaskClient]) -> None:
    client = client_as("viewer")
    page = client.get("/")
    assert page.status_code == 200
    assert page.text.count('<tr data-agent="') == len(ui_env.agent_ids)
    assert 'data-sync="Synced"' in page.text and 'data-sync="NoGroup"' in page.text
    # counts: every agent was just seen, so all online
    assert re.search(r'data-status="online"><b>12</b>', page.text)
    edge = client.get("/?group=edge")
    rows = re.findall(r'<tr data-agent="([^"]+)"', edge.text)
    assert rows and all(ui_env.store.get_agent(a).group == "edge" for a in rows)
    canary = client.get("/?label=ring%3Dcanary")
    assert all(
        ui_env.store.get_agent(a).labels.get("ring") == "canary"
        for a in re.findall(r'<tr data-agent="([^"]+)"', canary.text)
    )
    assert client.get("/?status=offline").text.count('<tr data-agent="') == 0
    assert client.get("/?q=host-00003").text.count('<tr data-agent="') == 1
    first = client.get("/?limit=5")
    assert first.text.count('<tr data-agent="') == 5 and 'rel="next"' in first.text
    last = client.get("/?limit=5&offset=10")
    assert last.text.count('<tr data-agent="') == 2 and 'rel="prev"' in last.text
    assert client.get("/?label=novalue").status_code == 400
    assert client.get("/?limit=abc").status_code == 400
    # no metrics process in this test: the page says so instead of showing zeros
    assert "Metrics unavailable" in page.text


def test_agent_page_shows_identity_charts_diff_and_events(
    ui_env: UiEnv, client_as: Callable[[str], FlaskClient]
) -> None:
    client = client_as("viewer")
    agent_id = ui_env.agent_ids[0]  # tier edge, synced on SHA2
    page = client.get(f"/agents/{agent_id}")
    assert page.status_code == 200
    assert "host-00000.example.net" in page.text and "tier=edge" in page.text
    charts = re.findall(r'<img class="chart" src="([^"]+)"', page.text)
    assert len(charts) == 6
    chart = client.get(charts[0].replace("&amp;", "&"))
    assert chart.status_code == 200 and chart.mimetype == "image/svg+xml"
    root = ET.fromstring(chart.text)
    assert root.tag.endswith("svg") and "<style>" in chart.text
    # no metrics process in this test: the chart says so instead of drawing zeros
    assert "Charts unavailable: the metrics process is not running." in chart.text
    assert client.get(f"/agents/{agent_id}/charts/99.svg").status_code == 404
    assert client.get("/agents/ag_nope/charts/0.svg").status_code == 404
    assert "runs exactly the desired config" in page.text
    assert "registered" in page.text and "applied" in page.text
    # viewers see no action buttons
    assert 'id="agent-actions"' not in page.text and "data-action=" not in page.text
    for rng in ("15m", "1h", "6h", "24h", "7d"):
        assert client.get(f"/agents/{agent_id}?range={rng}").status_code == 200
    custom = client.get(f"/agents/{agent_id}?range=custom&from=2026-01-01T00:00&to=2026-01-02T00:00")
    assert custom.status_code == 200 and "from=2026-01-01T00:00" in custom.text.replace("%3A", ":")
    bad = client.get(f"/agents/{agent_id}?range=custom&from=2026-01-02T00:00&to=2026-01-01T00:00")
    assert bad.status_code == 200 and "must be before" in bad.text
    assert client.get("/agents/ag_doesnotexist").status_code == 404


def test_agent_page_diffs_effective_against_desired(
    ui_env: UiEnv, client_as: Callable[[str], FlaskClient]
) -> None:
    """An agent still running revision 1's edge config shows the line revision 2 added."""
    from datetime import UTC, datetime

    from schemas.api import ApplyResult, StatusReport

    agent_id = ui_env.agent_ids[0]
    old = next(g for g in ui_env.store.get_revision(SHA1).group_configs if g.name == "edge")
    ui_env.store.report_status(
        agent_id,
        StatusReport(
            collector_state="running",
            effective_config_hash=old.config_hash,
            effective_revision=SHA1,
            last_apply=ApplyResult(
                result="applied", config_hash=old.config_hash, revision=SHA1, at=datetime.now(UTC)
            ),
            uptime_s=5,
        ),
    )
    page = client_as("viewer").get(f"/agents/{agent_id}")
    assert 'class="add">+# second revision' in page.text
    assert "OutOfSync" in page.text


def test_operator_commands_need_confirmation_and_csrf(
    ui_env: UiEnv, client_as: Callable[[str], FlaskClient]
) -> None:
    agent_id = ui_env.agent_ids[0]
    operator = client_as("operator")
    page = operator.get(f"/agents/{agent_id}")
    for action in ("start", "stop", "restart", "shutdown"):
        assert f'data-action="{action}"' in page.text
    token = csrf_of(page.text)
    # without confirm: a confirmation page, nothing queued
    ask = operator.post(f"/agents/{agent_id}/stop", data={"csrf_token": token})
    assert ask.status_code == 200 and "Stop the collector" in ask.text
    assert ui_env.store.list_commands(agent_id) == []
    # without CSRF: refused
    assert operator.post(f"/agents/{agent_id}/stop", data={"confirm": "yes"}).status_code == 400
    assert ui_env.store.list_commands(agent_id) == []
    done = operator.post(f"/agents/{agent_id}/stop", data={"csrf_token": token, "confirm": "yes"})
    assert done.status_code == 302
    commands = ui_env.store.list_commands(agent_id)
    assert [(c.action, c.state, c.issued_by) for c in commands] == [("stop", "queued", "operator-user")]
    assert operator.post(f"/agents/{agent_id}/explode", data={"csrf_token": token}).status_code == 404


def test_viewer_cannot_command_even_with_a_forged_form(
    ui_env: UiEnv, client_as: Callable[[str], FlaskClient]
) -> None:
    agent_id = ui_env.agent_ids[0]
    viewer = client_as("viewer")
    token = csrf_of(viewer.get("/").text)
    response = viewer.post(f"/agents/{agent_id}/stop", data={"csrf_token": token, "confirm": "yes"})
    assert response.status_code == 403
    assert ui_env.store.list_commands(agent_id) == []


def test_pipelines_list_and_graph(ui_env: UiEnv, client_as: Callable[[str], FlaskClient]) -> None:
    client = client_as("viewer")
    page = client.get("/pipelines")
    assert page.status_code == 200
    for name in ("app-logs", "gateway-traces", "k8s-node-metrics"):
        assert f'href="/pipelines/{name}"' in page.text
    graph = client.get("/pipelines/gateway-traces")
    assert graph.status_code == 200
    assert '<svg class="pipeline-graph"' in graph.text
    assert 'class="node node-receiver"' in graph.text and 'class="node node-exporter"' in graph.text
    assert '<g class="edge"' in graph.text and ">traces<" in graph.text
    assert '<script type="application/json">' in graph.text
    assert client.get("/pipelines/nope").status_code == 404


def test_groups_history_and_diff(ui_env: UiEnv, client_as: Callable[[str], FlaskClient]) -> None:
    client = client_as("viewer")
    page = client.get("/groups?group=edge")
    assert page.status_code == 200
    assert "filelog/app-logs.tail" in page.text  # rendered config
    assert SHA1[:8] in page.text and SHA2[:8] in page.text  # history
    assert 'class="add">+# second revision' in page.text  # default diff: previous -> current
    same = client.get(f"/groups?group=edge&from={SHA2}&to={SHA2}")
    assert "identical in both revisions" in same.text
    gateway = client.get("/groups?group=gateway")
    assert "tier=gateway" in gateway.text
    assert client.get("/groups?group=nope").status_code == 302
    bad = client.get("/groups?group=edge&from=zzzz&to=" + SHA2, follow_redirects=True)
    assert bad.status_code == 200 and "Cannot diff" in bad.text


def test_runs_show_outcome_and_diagnostics(client_as: Callable[[str], FlaskClient]) -> None:
    page = client_as("viewer").get("/runs")
    assert "published" in page.text and "invalid" in page.text
    assert "pipelines/app-logs.yaml:12:5" in page.text and "CT201" in page.text


def test_tokens_are_admin_only(ui_env: UiEnv, client_as: Callable[[str], FlaskClient]) -> None:
    for role in ("viewer", "operator"):
        client = client_as(role)
        assert 'href="/tokens"' not in client.get("/").text
        assert client.get("/tokens").status_code == 403
        token = csrf_of(client.get("/").text)
        assert (
            client.post("/tokens", data={"csrf_token": token, "name": "x", "role": "admin"}).status_code
            == 403
        )
    admin = client_as("admin")
    page = admin.get("/tokens")
    assert page.status_code == 200 and "viewer-user" in page.text
    created = admin.post("/tokens", data={"csrf_token": csrf_of(page.text), "name": "ci", "role": "operator"})
    assert created.status_code == 200
    secret = re.search(r'id="new-secret">.*?<code>([^<]+)</code>', created.text, re.S)
    assert secret
    fresh = ui_env.app.test_client()
    login(fresh, secret.group(1))
    assert "data-action=" in fresh.get(f"/agents/{ui_env.agent_ids[0]}").text  # operator buttons
    bad = admin.post("/tokens", data={"csrf_token": csrf_of(page.text), "name": "", "role": "god"})
    assert bad.status_code == 400


def test_security_headers_and_no_external_assets(client_as: Callable[[str], FlaskClient]) -> None:
    client = client_as("viewer")
    page = client.get("/")
    assert "default-src 'self'" in page.headers["Content-Security-Policy"]
    assert page.headers["X-Frame-Options"] == "DENY"
    for url in re.findall(r'(?:src|href)="([^"]+)"', page.text):
        assert not url.startswith(("http:", "https:", "//")), url
    for asset in ("/ui/static/app.css", "/ui/static/app.js"):
        response = client.get(asset)
        assert response.status_code == 200
        response.close()


def test_api_still_answers_json_errors(ui_env: UiEnv) -> None:
    client = ui_env.app.test_client()
    response = client.get("/api/v1/agents")
    assert response.status_code == 401 and response.json is not None and "error" in response.json


def test_every_ui_route_is_documented(ui_env: UiEnv) -> None:
    from tests.conftest import ROOT

    text = (ROOT / "docs" / "ui.md").read_text()
    for rule in ui_env.app.url_map.iter_rules():
        if not rule.endpoint.startswith("ui."):
            continue
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            assert f"`{method} {rule.rule}" in text, f"{method} {rule.rule} is not documented in docs/ui.md"


def test_bad_input_is_a_4xx_or_a_page_never_a_500(
    ui_env: UiEnv, client_as: Callable[[str], FlaskClient]
) -> None:
    admin = client_as("admin")
    agent_id = ui_env.agent_ids[0]
    token = csrf_of(admin.get("/").text)
    weird = ["%00", "x" * 5000, "'; DROP TABLE agents;--", "%F0%9F%92%A5", "..%2F..%2Fetc%2Fpasswd"]
    for value in weird:
        for path in (
            f"/?q={value}",
            f"/?group={value}",
            f"/?label=a%3D{value}",
            f"/?status={value}&sync={value}",
            f"/?offset=-5&limit={value}",
            f"/agents/{value}",
            f"/agents/{agent_id}?range={value}",
            f"/agents/{agent_id}?range=custom&from={value}&to={value}",
            f"/agents/{agent_id}/charts/1.svg?range={value}",
            f"/pipelines/{value}",
            f"/groups?group={value}",
            f"/groups?group=edge&from={value}&to={value}",
            f"/tokens/{value}/revoke",
        ):
            response = admin.get(path)
            assert response.status_code < 500, (path, response.status_code)
            response.close()
        for path, data in (
            (f"/agents/{value}/stop", {"confirm": "yes"}),
            (f"/agents/{agent_id}/{value}", {"confirm": "yes"}),
            ("/tokens", {"name": value, "role": value}),
            ("/login", {"token": value, "next": value}),
        ):
            response = admin.post(path, data={"csrf_token": token, **data})
            assert response.status_code < 500, (path, response.status_code)
    assert ui_env.store.list_commands(agent_id) == []
