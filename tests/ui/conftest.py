"""UI fixtures: a real app (create_app) on a real SQLite store in tmp_path, seeded by tests.ui.seed,
and a logged-in Flask test client per role."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.ui.seed import seed
from webui.app import create_app
from webui.context import get_store
from webui.settings import ServerSettings
from webui.store import Store

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


@dataclass
class UiEnv:
    app: Flask
    store: Store
    agent_ids: list[str]
    tokens: dict[str, str]  # role -> secret


def csrf_of(html: str) -> str:
    match = CSRF.search(html)
    assert match, "page has no CSRF field"
    return match.group(1)


def login(client: FlaskClient, token: str) -> None:
    page = client.get("/login")
    response = client.post("/login", data={"token": token, "csrf_token": csrf_of(page.text), "next": "/"})
    assert response.status_code == 302, response.text


@pytest.fixture
def ui_env(tmp_path: Path) -> Iterator[UiEnv]:
    app = create_app(ServerSettings(data_dir=tmp_path / "data"))
    with app.app_context():
        store = get_store()
        ids = seed(store)
        tokens = {
            role: store.create_token(role, f"{role}-user").secret for role in ("viewer", "operator", "admin")
        }
        tokens["enroll"] = store.create_token("enroll", "enroller").secret
    yield UiEnv(app, store, ids, tokens)
    store.close()


@pytest.fixture
def client_as(ui_env: UiEnv) -> Callable[[str], FlaskClient]:
    def make(role: str) -> FlaskClient:
        client = ui_env.app.test_client()
        login(client, ui_env.tokens[role])
        return client

    return make
