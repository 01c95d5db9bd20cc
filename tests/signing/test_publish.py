"""The reconciler signs, the REAL server stores and serves: `ctrltower reconcile --signing-key` against
`ctrltower server` on 127.0.0.1 with a real Git repo; re-signing of an unsigned current commit; the
server's 422 for a statement about something else; the 304 path carries no statement."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from ctrltower.cli import cli
from ctrltower.keyfiles import generate_keys, load_signer, load_trust_keys
from schemas.api import HEADER_REVISION
from schemas.signing import STATEMENT_HEADER, peek_config, verify_config
from tests.reconciler.gitutil import edit, git, head, init_repo
from tests.support.server import ServerProcess, auth

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with ServerProcess(tmp_path_factory.mktemp("srv") / "data", poll_interval_s=0.5) as srv:
        yield srv


def _reconcile(server: ServerProcess, token: str, repo: Path, cache: Path, *extra: str) -> dict[str, object]:
    args = ["reconcile", "--source", str(repo), "--server", server.base_url, "--cache-dir", str(cache)]
    result = CliRunner().invoke(
        cli, [*args, "--format", "json", *extra], env={"CTRLTOWER_TOKEN": token}, catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    return dict(json.loads(result.output))


def test_signed_publish_served_verified_and_resigned(server: ServerProcess, tmp_path: Path) -> None:
    token = server.create_token("reconciler")
    priv, pub = generate_keys(tmp_path / "keys")
    keys = load_trust_keys([pub])
    repo = init_repo(tmp_path / "cfg", rollouts=False)  # every commit at once
    cache = tmp_path / "cache"
    with server.client() as http:
        r = http.post(
            "/api/agent/v1/agents",
            json={"instance_id": "edge-host-0001", "hostname": "h", "labels": {"tier": "edge"}},
            headers=auth(server.enroll_token),
        )
        agent_id, agent_token = r.json()["agent_id"], r.json()["agent_token"]

        def get(etag: str | None = None) -> tuple[int, dict[str, str], bytes]:
            headers = auth(agent_token) | ({"If-None-Match": f'"{etag}"'} if etag else {})
            resp = http.get(f"/api/agent/v1/agents/{agent_id}/config", headers=headers)
            return resp.status_code, dict(resp.headers), resp.content

        # published without a key: served without a statement (agents without --trust-key go on)
        assert _reconcile(server, token, repo, cache)["outcome"] == "published"
        status, headers, _ = get()
        assert status == 200 and STATEMENT_HEADER.lower() not in {k.lower() for k in headers}

        # the same commit with a key: not "unchanged" but re-signed in place
        out = _reconcile(server, token, repo, cache, "--signing-key", str(priv))
        assert (out["outcome"], out["resigned"]) == ("unchanged", True)
        status, headers, body = get()
        st = verify_config(
            headers["x-ctrltower-statement"], keys, data=body, labels={"tier": "edge"}, now=_now()
        )
        assert st.commit == head(repo) == headers[HEADER_REVISION.lower()]
        assert st.seq == 1 and st.group == "edge" and st.expires_at - st.issued_at == 7 * 86400

        # fresh statements: the next run is a plain no-op
        out = _reconcile(server, token, repo, cache, "--signing-key", str(priv))
        assert (out["outcome"], out["resigned"]) == ("unchanged", False)

        # a new commit: signed with its own sequence number; the 304 path has no statement
        edit(repo, "groups/edge.yaml", "batch_timeout: 2s", "batch_timeout: 3s")
        git(repo, "commit", "-qam", "slower batches")
        out = _reconcile(server, token, repo, cache, "--signing-key", str(priv), "--signature-validity", "1h")
        assert out["outcome"] == "published"
        status, headers, body = get()
        st = verify_config(
            headers["x-ctrltower-statement"], keys, data=body, labels={"tier": "edge"}, now=_now()
        )
        assert st.seq == 2 and st.expires_at - st.issued_at == 3600
        status, headers, _ = get(etag=headers["x-ctrltower-config-hash"])
        assert status == 304 and "x-ctrltower-statement" not in headers

    with server.client(server.admin_token) as admin:
        detail = admin.get(f"/api/v1/revisions/{head(repo)}").json()
        stored = {g["name"]: g["statement"] for g in detail["group_configs"]}
        assert all(stored.values()) and peek_config(stored["edge"]).group == "edge"
        current = admin.get("/api/v1/revisions", params={"limit": 1}).json()["items"][0]
        assert current["signed_until"] is not None


def test_server_refuses_a_statement_about_something_else(server: ServerProcess, tmp_path: Path) -> None:
    priv, _ = generate_keys(tmp_path / "keys")
    signer = load_signer(priv)
    config = "receivers: {}\n"
    digest = hashlib.sha256(config.encode()).hexdigest()
    statement = signer.sign_config(
        group="other", selector={}, commit="b" * 40, seq=1, sha256=digest, now=_now(), valid_for_s=60
    )
    body = {
        "commit_sha": "b" * 40,
        "previous_commit_sha": None,
        "groups": [
            {"name": "g", "selector": {}, "priority": 0, "config": config, "config_hash": digest,
             "statement": statement},
        ],
        "pipelines": [],
    }  # fmt: skip
    with server.client(server.create_token("reconciler")) as c:
        r = c.post("/api/v1/revisions", json=body)
        assert r.status_code == 422, r.text
        assert r.json()["error"]["details"] == {
            "g": "statement is about another group, selector, commit or config"
        }
        body["groups"][0]["statement"] = "garbage"  # type: ignore[index]
        r = c.post("/api/v1/revisions", json=body)
        assert r.status_code == 422 and "malformed" in r.json()["error"]["details"]["g"]


def _now() -> int:
    return int(time.time())
