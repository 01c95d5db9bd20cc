"""First end-to-end check of the app in-process: register, publish, pull config, report status."""

from __future__ import annotations

from pathlib import Path

from schemas.common import config_hash
from webui.app import create_app
from webui.settings import ServerSettings


def test_register_publish_pull(tmp_path: Path) -> None:
    app = create_app(ServerSettings(data_dir=tmp_path, poll_interval_s=1, ui=False, metrics=False))
    store = app.extensions["ctrltower"]
    tokens = store.ensure_bootstrap_tokens()
    client = app.test_client()

    def auth(t: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {t}"}

    r = client.post(
        "/api/agent/v1/agents",
        json={"instance_id": "inst-00001", "hostname": "h1", "labels": {"env": "prod"}},
        headers=auth(tokens["enroll"]),
    )
    assert r.status_code == 200
    agent_id, agent_token = r.json["agent_id"], r.json["agent_token"]
    assert (
        client.get(f"/api/agent/v1/agents/{agent_id}/config", headers=auth(agent_token)).json["error"]["code"]
        == "no_revision"
    )
    cfg = "receivers: {}\n"
    pub = {
        "commit_sha": "a" * 40,
        "previous_commit_sha": None,
        "groups": [
            {
                "name": "edge",
                "selector": {"env": "prod"},
                "priority": 1,
                "config": cfg,
                "config_hash": config_hash(cfg),
            }
        ],
        "pipelines": [],
    }
    r = client.post("/api/v1/revisions", json=pub, headers=auth(tokens["admin"]))
    assert r.status_code == 201, r.json
    r = client.get(f"/api/agent/v1/agents/{agent_id}/config", headers=auth(agent_token))
    assert r.status_code == 200 and r.data == cfg.encode()
    assert r.headers["ETag"] == f'"{config_hash(cfg)}"'
    r = client.get(
        f"/api/agent/v1/agents/{agent_id}/config",
        headers={**auth(agent_token), "If-None-Match": r.headers["ETag"]},
    )
    assert r.status_code == 304
