"""The real server under faults: SIGKILL mid-publish, racing reconcilers, a deleted database."""

from __future__ import annotations

import os
import signal
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from schemas.common import config_hash
from tests.support.server import ServerProcess, auth
from tests.webui.helpers import group, publish, registration, sha


def big_revision(commit: str, previous: str | None, n_groups: int, tag: str) -> dict[str, Any]:
    filler = "# " + "x" * 200 + "\n"
    groups = [group("edge", {"env": "prod"}, 10, config=f"# {tag} edge\n" + filler * 50)]
    groups += [
        group(f"g{i:04d}", {"rack": f"r{i}"}, 0, config=f"# {tag} {i}\n" + filler * 100)
        for i in range(n_groups)
    ]
    return publish(commit, previous, groups)


def write_locked(db: Path) -> bool:
    """True while another connection holds the write lock (a publish transaction in progress)."""
    conn = sqlite3.connect(db, timeout=0, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("ROLLBACK")
        return False
    except sqlite3.OperationalError:
        return True
    finally:
        conn.close()


def test_sigkill_mid_publish_keeps_previous_revision_whole(tmp_path: Path) -> None:
    """SIGKILL lands inside a publish transaction: the server comes back serving the previous revision,
    whole. Catching the transaction is a race, more so on a loaded machine: a publish that finished
    before the kill must itself be whole, and the next attempt publishes on top of it (bounded)."""
    srv = ServerProcess(tmp_path / "srv", workers=1)
    with srv:
        with srv.client(srv.enroll_token) as c:
            reg = c.post("/api/agent/v1/agents", json=registration("inst-kill-01", {"env": "prod"})).json()
        agent_id, agent_token = reg["agent_id"], reg["agent_token"]
        rec = srv.create_token("reconciler")
        current = big_revision(sha(1), None, 5, "v1")
        with srv.client(rec) as c:
            assert c.post("/api/v1/revisions", json=current).status_code == 201
        db = srv.data_dir / "state.db"

        killed_mid = 0
        published = 1
        for attempt in range(12):
            payload = big_revision(sha(100 + attempt), current["commit_sha"], 300, f"v-{attempt}")
            outcome: dict[str, Any] = {}

            def send(body: dict[str, Any] = payload, out: dict[str, Any] = outcome) -> None:
                try:
                    out["status"] = httpx.post(
                        srv.base_url + "/api/v1/revisions", json=body, headers=auth(rec), timeout=120
                    ).status_code
                except httpx.HTTPError as exc:
                    out["error"] = exc

            sender = threading.Thread(target=send)
            sender.start()
            deadline = time.monotonic() + 120  # bounded; it returns when the lock shows or the send ends
            while time.monotonic() < deadline and sender.is_alive() and not write_locked(db):
                time.sleep(0.0005)
            locked = sender.is_alive() and write_locked(db)
            srv.kill()
            sender.join(30)
            srv.start()
            with srv.client(rec) as c:
                revs = c.get("/api/v1/revisions").json()
            head = revs["items"][0]["commit_sha"]
            assert revs["items"][0]["current"]
            if "status" in outcome:  # the publish finished before the kill: it must be whole
                assert outcome["status"] == 201 and head == payload["commit_sha"]
                current, published = payload, published + 1
                continue
            assert head == current["commit_sha"], "a publish cut short by SIGKILL must leave the previous one"
            assert revs["page"]["total"] == published
            with srv.client(agent_token) as c:
                r = c.get(f"/api/agent/v1/agents/{agent_id}/config")
            assert r.status_code == 200 and r.content == current["groups"][0]["config"].encode()
            assert r.headers["ETag"] == f'"{config_hash(r.content)}"'
            with sqlite3.connect(db) as conn:  # nothing of the cut-short revision is left anywhere
                leftover = conn.execute(
                    "SELECT COUNT(*) FROM revision_groups WHERE commit_sha = ?", (payload["commit_sha"],)
                ).fetchone()[0]
                assert leftover == 0
                assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            if locked:
                killed_mid += 1
                break
        assert killed_mid >= 1, "the kill never landed inside the publish transaction in 12 attempts"

        # and a publish, uninterrupted, goes through whole
        final = big_revision(sha(3), current["commit_sha"], 300, "v3")
        with srv.client(rec) as c:
            assert c.post("/api/v1/revisions", json=final, timeout=120).status_code == 201
            detail = c.get(f"/api/v1/revisions/{sha(3)}").json()
        assert len(detail["group_configs"]) == 301
        assert all(config_hash(g["config"]) == g["config_hash"] for g in detail["group_configs"])


def test_racing_reconcilers_one_wins(tmp_path: Path) -> None:
    with ServerProcess(tmp_path / "srv", workers=2) as srv:
        rec = srv.create_token("reconciler")
        with srv.client(rec) as c:
            assert c.post("/api/v1/revisions", json=publish(sha(1), None, [group("edge")])).status_code == 201
        results: list[int] = []
        lock = threading.Lock()

        def racer(i: int) -> None:
            body = publish(sha(100 + i), sha(1), [group("edge", config=f"# racer {i}\n")])
            r = httpx.post(srv.base_url + "/api/v1/revisions", json=body, headers=auth(rec), timeout=30)
            with lock:
                results.append(r.status_code)

        threads = [threading.Thread(target=racer, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert sorted(results) == [201] + [409] * 7
        with srv.client(rec) as c:
            assert c.get("/api/v1/revisions").json()["page"]["total"] == 2


def test_deleted_database_agents_reregister_with_same_enroll_token(tmp_path: Path) -> None:
    srv = ServerProcess(tmp_path / "srv")
    with srv:
        enroll = srv.enroll_token
        with srv.client(enroll) as c:
            old = c.post("/api/agent/v1/agents", json=registration("inst-del-001")).json()
        srv.stop()
        for name in ("state.db", "state.db-wal", "state.db-shm"):
            (srv.data_dir / name).unlink(missing_ok=True)
        srv.start()
        assert srv.enroll_token == enroll
        with srv.client(old["agent_token"]) as c:
            r = c.get(f"/api/agent/v1/agents/{old['agent_id']}/config")
        assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"  # -> the agent re-registers
        with srv.client(enroll) as c:
            assert c.post("/api/agent/v1/agents", json=registration("inst-del-001")).status_code == 200


def test_body_limit_on_the_real_server_also_for_chunked_uploads(tmp_path: Path) -> None:
    with ServerProcess(tmp_path / "srv", extra_args=("--max-body", "65536")) as srv:
        url = srv.base_url + "/api/v1/tokens"
        headers = {**auth(srv.admin_token), "Content-Type": "application/json"}

        def chunks(total: int, piece: bytes = b" " * 4096) -> Any:
            for _ in range(total // len(piece)):
                yield piece
            yield b'{"role": "viewer", "name": "chunked"}'

        declared = httpx.post(url, content=b" " * 70000, headers=headers, timeout=30)
        assert declared.status_code == 413 and declared.json()["error"]["code"] == "body_too_large"
        chunked = httpx.post(url, content=chunks(200_000), headers=headers, timeout=30)
        assert chunked.status_code == 413 and chunked.json()["error"]["code"] == "body_too_large"
        small = httpx.post(url, content=chunks(8192), headers=headers, timeout=30)  # chunked, under the limit
        assert small.status_code == 201, small.text
        assert httpx.get(srv.base_url + "/api/health").status_code == 200


def test_a_killed_worker_is_replaced(tmp_path: Path) -> None:
    with ServerProcess(tmp_path / "srv", workers=1) as srv:
        assert srv.proc is not None
        children = Path(f"/proc/{srv.proc.pid}/task/{srv.proc.pid}/children").read_text().split()
        workers = [
            int(pid)
            for pid in children
            if "granian" in Path(f"/proc/{pid}/cmdline").read_bytes().decode()
            or "ctrltower" in Path(f"/proc/{pid}/cmdline").read_bytes().decode()
        ]
        assert workers, children
        os.kill(workers[0], signal.SIGKILL)
        deadline = time.monotonic() + 20
        ok = False
        while time.monotonic() < deadline and not ok:
            try:
                ok = httpx.get(srv.base_url + "/api/health", timeout=1).status_code == 200
            except httpx.HTTPError:
                time.sleep(0.2)
        assert ok, srv.log_text()
        assert srv.proc.poll() is None


def test_concurrent_agents_across_workers(tmp_path: Path) -> None:
    """40 agents register, poll and report at once against 2 worker processes: no 5xx, no lost writes."""
    with ServerProcess(tmp_path / "srv", workers=2, threads=4) as srv:
        rec = srv.create_token("reconciler")
        g = group("edge", {"env": "prod"})
        with srv.client(rec) as c:
            assert c.post("/api/v1/revisions", json=publish(sha(1), None, [g])).status_code == 201
        statuses: list[int] = []
        lock = threading.Lock()

        def agent(i: int) -> None:
            with httpx.Client(base_url=srv.base_url, timeout=30) as c:
                reg = c.post(
                    "/api/agent/v1/agents",
                    json=registration(f"inst-conc-{i:03d}", {"env": "prod"}),
                    headers=auth(srv.enroll_token),
                )
                codes = [reg.status_code]
                body = reg.json()
                h = auth(body["agent_token"])
                for n in range(10):
                    cfg = c.get(f"/api/agent/v1/agents/{body['agent_id']}/config", headers=h)
                    st = c.post(
                        f"/api/agent/v1/agents/{body['agent_id']}/status",
                        headers=h,
                        json={
                            "collector_state": "running",
                            "uptime_s": n,
                            "effective_config_hash": g["config_hash"],
                        },
                    )
                    codes += [cfg.status_code, st.status_code]
            with lock:
                statuses.extend(codes)

        threads = [threading.Thread(target=agent, args=(i,)) for i in range(40)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert len(statuses) == 40 * 21 and set(statuses) == {200}, sorted(set(statuses))
        with srv.client(srv.admin_token) as c:
            fleet = c.get("/api/v1/agents?limit=100").json()
        assert fleet["page"]["total"] == 40 and fleet["counts"]["Synced"] == 40
