"""Builders for server tests: publish payloads, registrations, status reports."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from schemas.common import config_hash


def group(
    name: str, selector: dict[str, str] | None = None, priority: int = 0, config: str | None = None
) -> dict[str, Any]:
    text = config if config is not None else f"# group {name}\nreceivers: {{}}\n"
    return {
        "name": name,
        "selector": selector or {},
        "priority": priority,
        "config": text,
        "config_hash": config_hash(text),
        "pipelines": [],
    }


def publish(
    sha: str,
    previous: str | None,
    groups: list[dict[str, Any]],
    pipelines: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    return {
        "commit_sha": sha,
        "previous_commit_sha": previous,
        "message": f"commit {sha[:7]}",
        "groups": groups,
        "pipelines": pipelines or [],
    }


def pipeline(name: str, groups: list[str]) -> dict[str, Any]:
    return {
        "name": name,
        "file": f"pipelines/{name}.yaml",
        "groups": groups,
        "signals": ["logs"],
        "nodes": [
            {"id": "in", "class": "receiver", "type": "filelog", "config": {"include": ["/var/log/*.log"]}},
            {"id": "out", "class": "exporter", "type": "otlphttp"},
        ],
        "edges": [{"from": "in", "to": "out", "signals": ["logs"]}],
    }


def registration(instance: str, labels: dict[str, str] | None = None, **extra: Any) -> dict[str, Any]:
    return {"instance_id": instance, "hostname": f"host-{instance}", "labels": labels or {}, **extra}


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat()


def sha(n: int) -> str:
    return f"{n:040x}"
