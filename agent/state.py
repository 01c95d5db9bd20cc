"""The agent's state directory: what it must remember across restarts, written atomically.

instance_id            persistent identity sent at registration
agent_token.json       the agent id and token of the last registration (0600): proof for the next one
last_received.yaml     the last config the server sent (with .json: hash, revision, group)
last_good.yaml         the last config the collector ran healthily (with .json)
failed.json            the hash whose apply failed: never retried until a different one arrives
operator_stopped       present while an operator's `stop` holds (until `start`)
collector.log          the collector's stdout and stderr
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from pathlib import Path

from fsio.atomic import atomic_write, fsync_dir
from schemas.common import config_hash


@dataclass(frozen=True)
class StoredConfig:
    """A config as received from the server: its exact bytes and identity."""

    data: bytes
    hash: str
    revision: str | None
    group: str | None


AGENT_TOKEN_FILE = "agent_token.json"


class StateDir:
    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(mode=0o700, parents=True, exist_ok=True)

    @property
    def collector_log(self) -> Path:
        return self.root / "collector.log"

    def instance_id(self) -> str:
        """The persistent instance id, created on first use."""
        path = self.root / "instance_id"
        try:
            value = path.read_text().strip()
            if len(value) >= 8:
                return value
        except FileNotFoundError:
            pass
        value = f"ct-{uuid.uuid4().hex}"
        atomic_write(path, value.encode() + b"\n")
        return value

    def _save_config(self, name: str, cfg: StoredConfig) -> None:
        meta = {"hash": cfg.hash, "revision": cfg.revision, "group": cfg.group}
        atomic_write(self.root / f"{name}.yaml", cfg.data)
        atomic_write(self.root / f"{name}.json", json.dumps(meta).encode())

    def _load_config(self, name: str) -> StoredConfig | None:
        try:
            data = (self.root / f"{name}.yaml").read_bytes()
            meta = json.loads((self.root / f"{name}.json").read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return None
        if not isinstance(meta, dict) or meta.get("hash") != config_hash(data):
            return None  # torn or tampered: do not trust it
        return StoredConfig(data, meta["hash"], meta.get("revision"), meta.get("group"))

    def save_last_received(self, cfg: StoredConfig) -> None:
        self._save_config("last_received", cfg)

    def last_received(self) -> StoredConfig | None:
        return self._load_config("last_received")

    def save_last_good(self, cfg: StoredConfig) -> None:
        self._save_config("last_good", cfg)

    def last_good(self) -> StoredConfig | None:
        return self._load_config("last_good")

    def failed_hash(self) -> str | None:
        try:
            value = json.loads((self.root / "failed.json").read_text()).get("hash")
        except (FileNotFoundError, json.JSONDecodeError, AttributeError):
            return None
        return value if isinstance(value, str) else None

    def save_failed_hash(self, digest: str | None) -> None:
        path = self.root / "failed.json"
        if digest is None:
            path.unlink(missing_ok=True)
        else:
            atomic_write(path, json.dumps({"hash": digest}).encode())

    def agent_token(self) -> tuple[str, str] | None:
        """(agent id, token) from the last registration: the proof a re-registration presents."""
        try:
            data = json.loads((self.root / AGENT_TOKEN_FILE).read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return None
        if not isinstance(data, dict):
            return None
        agent_id, token = data.get("agent_id"), data.get("token")
        return (agent_id, token) if isinstance(agent_id, str) and isinstance(token, str) else None

    def save_agent_token(self, agent_id: str, token: str) -> None:
        atomic_write(
            self.root / AGENT_TOKEN_FILE, json.dumps({"agent_id": agent_id, "token": token}).encode()
        )

    def operator_stopped(self) -> bool:
        return (self.root / "operator_stopped").exists()

    def set_operator_stopped(self, stopped: bool) -> None:
        path = self.root / "operator_stopped"
        if stopped:
            atomic_write(path, b"stopped by operator\n")
        else:
            path.unlink(missing_ok=True)
            fsync_dir(self.root)
