"""Issue 10 in the UI: logout revokes the session server-side (a copied cookie stops working), the
cookie is `Secure` over HTTPS (behind a proxy only when the server is told it is behind one), and an
operator can approve an agent's re-registration (a viewer cannot)."""

from __future__ import annotations

from pathlib import Path

from tests.ui.conftest import UiEnv, csrf_of, login
from webui.app import create_app
from webui.context import get_store
from webui.settings import ServerSettings


def test_logout_revokes_the_session_for_every_copy_of_the_cookie(ui_env: UiEnv) -> None:
    client = ui_env.app.test_client()
    login(client, ui_env.tokens["operator"])
    stolen = client.get_cookie("ctrltower_session")
    assert stolen is not None
    home = client.get("/")
    assert home.status_code == 200
    assert client.post("/logout", data={"csrf_token": csrf_of(home.text)}).status_code == 302

    thief = ui_env.app.test_client()
    thief.set_cookie("ctrltower_session", stolen.value)  # the cookie as it was before logout
    replay = thief.get("/")
    assert replay.status_code == 302 and replay.headers["Location"].startswith("/login")
    agent = ui_env.agent_ids[0]
    assert thief.post(f"/agents/{agent}/stop", data={"confirm": "yes"}).status_code in (400, 401)
    assert ui_env.store.list_commands(agent) == []  # nothing was queued with the stale cookie


def test_another_session_of_the_same_token_survives_a_logout(ui_env: UiEnv) -> None:
    first, second = ui_env.app.test_client(), ui_env.app.test_client()
    login(first, ui_env.tokens["viewer"])
    login(second, ui_env.tokens["viewer"])
    home = first.get("/")
    first.post("/logout", data={"csrf_token": csrf_of(home.text)})
    assert first.get("/").status_code == 302
    assert second.get("/").status_code == 200


def _login_cookie(app_settings: ServerSettings, base_url: str, headers: dict[str, str]) -> str:
    app = create_app(app_settings)
    with app.app_context():
        token = get_store().create_token("viewer", "v").secret
    client = app.test_client()
    page = client.get("/login", base_url=base_url, headers=headers)
    r = client.post(
        "/login",
        data={"token": token, "csrf_token": csrf_of(page.text), "next": "/"},
        base_url=base_url,
        headers=headers,
    )
    assert r.status_code == 302, r.text
    with app.app_context():
        get_store().close()
    return str(r.headers["Set-Cookie"])


def test_session_cookie_is_secure_over_https_and_behind_a_trusted_proxy_only(tmp_path: Path) -> None:
    direct = ServerSettings(data_dir=tmp_path / "direct")
    assert "Secure" not in _login_cookie(direct, "http://localhost", {})
    assert "; Secure" in _login_cookie(direct, "https://localhost", {})
    forwarded = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "198.51.100.7"}
    # anyone can send X-Forwarded-Proto: it counts only when the operator says a proxy is in front
    assert "Secure" not in _login_cookie(direct, "http://localhost", forwarded)
    proxied = ServerSettings(data_dir=tmp_path / "proxied", behind_proxy=True)
    assert "; Secure" in _login_cookie(proxied, "http://localhost", forwarded)


def test_operator_approves_a_reregistration_in_the_ui(ui_env: UiEnv) -> None:
    agent = ui_env.agent_ids[0]
    url = f"/agents/{agent}/approve-reregistration"
    viewer = ui_env.app.test_client()
    login(viewer, ui_env.tokens["viewer"])
    page = viewer.get(f"/agents/{agent}")
    assert "Allow re-registration" not in page.text
    assert viewer.post(url, data={"csrf_token": csrf_of(page.text), "confirm": "yes"}).status_code == 403
    operator = ui_env.app.test_client()
    login(operator, ui_env.tokens["operator"])
    page = operator.get(f"/agents/{agent}")
    assert "Allow re-registration" in page.text
    asked = operator.post(url, data={"csrf_token": csrf_of(page.text)})
    assert asked.status_code == 200 and "without its token" in asked.text  # a confirmation page first
    done = operator.post(url, data={"csrf_token": csrf_of(page.text), "confirm": "yes"})
    assert done.status_code == 302
    actions = [(a.action, a.target) for a in ui_env.store.list_audit().items]
    assert ("agent.approve_reregistration", agent) in actions
