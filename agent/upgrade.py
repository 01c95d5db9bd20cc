"""Collector upgrades: which build a config asks for, fetching and checking it, and the builds on disk.

The rendered config names its build on a header line (`# ctrltower: collector V`, schemas/repo.py), so
the version is part of the reviewed, signed bytes. The agent downloads that build from the server,
checks its sha256 (and, with --trust-key, the signed statement for exactly that version and sha256),
and keeps it in STATE/collectors/. `current.json` says which build runs, so a restarted agent goes on
with it. At most two builds stay in that directory: the running one and the one before it (the
rollback target); the --collector binary the agent was started with is the operator's and never
deleted.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from agent.client import AgentClient
from fsio.atomic import atomic_write, fsync_dir
from schemas.repo import COLLECTOR_LINE_PREFIX, COLLECTOR_VERSION_PATTERN
from schemas.signing import Untrusted, verify_collector

log = logging.getLogger("ctrltower.agent")
_PREFIX = COLLECTOR_LINE_PREFIX.encode()
_VERSION = re.compile(COLLECTOR_VERSION_PATTERN)


def wanted_version(data: bytes) -> str | None:
    """The build a rendered config asks for (its second header line), or None. A version that is not
    a valid label (it becomes a file name and a URL path) is ignored."""
    for line in data.split(b"\n", 3)[:3]:
        if line.startswith(_PREFIX):
            version = line[len(_PREFIX) :].decode("utf-8", "replace").strip()
            if len(version) <= 128 and _VERSION.match(version):
                return version
            log.warning("ignoring an invalid collector version in the config: %r", version[:200])
    return None


@dataclass(frozen=True)
class Build:
    version: str
    path: Path
    sha256: str | None = None  # None: the --collector binary (not ours to check or delete)


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class Builds:
    """STATE/collectors/: downloaded builds and current.json (the one that runs)."""

    def __init__(self, root: Path, initial: Build) -> None:
        self.root = root
        self.initial = initial
        root.mkdir(mode=0o700, parents=True, exist_ok=True)

    @property
    def _current_file(self) -> Path:
        return self.root / "current.json"

    def current(self) -> Build:
        """The build recorded as running, if its file is still there with its sha256; else --collector."""
        try:
            meta = json.loads(self._current_file.read_text())
            build = Build(str(meta["version"]), self.root / str(meta["file"]), str(meta["sha256"]))
        except (FileNotFoundError, json.JSONDecodeError, KeyError, TypeError):
            return self.initial
        if (
            build.path.parent != self.root
            or not build.path.is_file()
            or _sha256_file(build.path) != build.sha256
        ):
            log.warning(
                "recorded collector build %s is missing or changed: using %s",
                build.version,
                self.initial.path,
            )
            return self.initial
        return build

    def set_current(self, build: Build) -> None:
        if build.sha256 is None:
            self._current_file.unlink(missing_ok=True)
            fsync_dir(self.root)
            return
        meta = {"version": build.version, "file": build.path.name, "sha256": build.sha256}
        atomic_write(self._current_file, json.dumps(meta).encode())

    def find(self, version: str) -> Build | None:
        for path in self.root.glob(f"{version}-*.bin"):
            digest = _sha256_file(path)
            if path.name == f"{version}-{digest[:16]}.bin":
                return Build(version, path, digest)
        return None

    def store(self, version: str, data: bytes) -> Build:
        digest = hashlib.sha256(data).hexdigest()
        path = self.root / f"{version}-{digest[:16]}.bin"
        atomic_write(path, data, mode=0o700)  # executable by the agent's user only
        return Build(version, path, digest)

    def prune(self, keep: list[Build]) -> None:
        """Delete every downloaded build but `keep` (at most two: running and previous)."""
        names = {b.path.name for b in keep if b.sha256 is not None}
        for path in self.root.glob("*.bin"):
            if path.name not in names:
                path.unlink(missing_ok=True)


class Fetcher:
    """Downloads a build and checks it; raises Untrusted for anything that must not run."""

    def __init__(self, client: AgentClient, keys: Mapping[str, Ed25519PublicKey], builds: Builds) -> None:
        self.client = client
        self.keys = dict(keys)
        self.builds = builds

    def get(self, agent_id: str, token: str, version: str) -> Build:
        """The build on disk (downloaded now if needed). ServerUnavailable propagates (retry later)."""
        have = self.builds.find(version)
        if have is not None:
            return have
        data, announced, statement = self.client.fetch_collector(agent_id, token, version)
        digest = hashlib.sha256(data).hexdigest()
        if announced != digest:
            raise Untrusted(
                f"collector {version}: sha256 {digest[:12]} is not the announced {announced[:12]}"
            )
        if self.keys:
            try:
                verify_collector(statement, self.keys, version=version, data_sha256=digest)
            except Untrusted as exc:
                raise Untrusted(f"collector {version}: {exc.reason}") from exc
        log.info("downloaded collector %s (%d bytes, sha256 %s)", version, len(data), digest[:12])
        return self.builds.store(version, data)


class Upgrades:
    """The running build, the one before it, and the switch between them (the runner's view)."""

    def __init__(
        self, state_root: Path, initial: Build, client: AgentClient, keys: Mapping[str, Ed25519PublicKey]
    ) -> None:
        self.builds = Builds(state_root / "collectors", initial)
        self.fetcher = Fetcher(client, keys, self.builds)
        self.current = self.builds.current()
        self.previous: Build | None = None

    def needed(self, data: bytes) -> str | None:
        """The version this config asks for, if it is not the one running."""
        want = wanted_version(data)
        return want if want is not None and want != self.current.version else None

    def prepare(self, agent_id: str, token: str, version: str) -> Build:
        return self.fetcher.get(agent_id, token, version)

    def switched(self, build: Build) -> None:
        """`build` runs now: remember it across restarts, keep it and its predecessor, delete the rest."""
        self.previous, self.current = self.current, build
        self.builds.set_current(build)
        self.builds.prune([build, self.previous])
        log.info("collector %s runs now (was %s)", build.version, self.previous.version)

    def discard(self) -> None:
        """After a failed switch: only the running build and its predecessor stay on disk."""
        self.builds.prune([b for b in (self.current, self.previous) if b is not None])
