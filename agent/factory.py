"""Where the agent's side effects are made: the state dir, the HTTP client, the collector process (not
started), the scraper of its telemetry port, the build that runs, and the clock.

`Agent` takes these as `AgentParts`; `build_parts` makes the real ones from the settings. A test builds
its own (a stepped clock, a client on an in-process transport) and runs the loop's pieces without a
port or a subprocess of its own choosing.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from agent.client import AgentClient, MetricsScraper
from agent.clock import SYSTEM_CLOCK, Clock
from agent.environment import collector_environment
from agent.settings import AgentSettings
from agent.state import StateDir
from agent.supervisor import CollectorProcess
from agent.supervisor import version as collector_version
from agent.upgrade import Build, Upgrades


def pick_free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@dataclass
class AgentParts:
    clock: Clock
    state: StateDir
    client: AgentClient
    upgrades: Upgrades
    collector: CollectorProcess
    scraper: MetricsScraper
    telemetry_port: int

    def close(self) -> None:
        self.client.close()
        self.scraper.close()


def build_parts(
    settings: AgentSettings,
    *,
    transport: httpx.BaseTransport | None = None,
    trust_keys: Mapping[str, Ed25519PublicKey] | None = None,
    clock: Clock = SYSTEM_CLOCK,
) -> AgentParts:
    state = StateDir(settings.state_dir)
    telemetry_port = settings.telemetry_port or pick_free_port()
    # An explicit environment: a pipeline's ${env:X} must not read the agent's secrets.
    env = collector_environment(os.environ, settings.collector_env, telemetry_port)
    client = AgentClient(settings.server, settings.http_timeout_s, transport=transport)
    # The build that runs: a downloaded upgrade (STATE/collectors/current.json) or --collector.
    initial = Build(collector_version(settings.collector) or "unknown", settings.collector)
    upgrades = Upgrades(state.root, initial, client, trust_keys or {})
    collector = CollectorProcess(upgrades.current.path, settings.config_path, env, state.collector_log)
    scraper = MetricsScraper(f"http://127.0.0.1:{telemetry_port}/metrics", timeout=2.0)
    return AgentParts(clock, state, client, upgrades, collector, scraper, telemetry_port)
