"""Parameter validation (pure) and the Flask blueprint's answers when the metrics process is down."""

from __future__ import annotations

from pathlib import Path

import pytest

from metrics.params import QueryError, parse_agents, parse_duration, parse_range, parse_time, parse_top
from tests.support.server import InProcessServer

NOW = 1_790_000_000.0


def _q(**kw: str) -> dict[str, list[str]]:
    return {k: [v] for k, v in kw.items()}


def test_times_and_durations() -> None:
    assert parse_time("now", NOW, "t") == NOW
    assert parse_time("-24h", NOW, "t") == NOW - 86400
    assert parse_time("now-7d", NOW, "t") == NOW - 7 * 86400
    assert parse_time("1700000000.5", NOW, "t") == 1700000000.5
    assert parse_time("2026-01-01T00:00:00Z", NOW, "t") == 1767225600.0
    assert parse_time("2026-01-01T00:00:00", NOW, "t") == 1767225600.0  # naive means UTC
    assert parse_duration("90", "step") == 90 and parse_duration("5m", "step") == 300
    for bad in ("yesterday", "nan", "inf", "-5x"):
        with pytest.raises(QueryError):
            parse_time(bad, NOW, "start")
    with pytest.raises(QueryError, match="duration"):
        parse_duration("5 minutes", "step")


def test_range_defaults_and_errors() -> None:
    req = parse_range(_q(metric="cpu"), NOW)
    assert (req.scope, req.key, req.start, req.end, req.step, req.agg) == (
        "fleet",
        None,
        NOW - 3600,
        NOW,
        None,
        "sum",
    )
    assert parse_range(_q(metric="memory", group="edge", agg="max"), NOW).scope == "group"
    cases = [
        ({}, "required"),
        (_q(metric="disk"), "unknown metric"),
        (_q(metric="cpu", agent="a", group="g"), "not both"),
        (_q(metric="cpu", start="-1h", end="-2h"), "after"),
        (_q(metric="cpu", start="-500d"), "days"),
        (_q(metric="cpu", step="0.5"), "at least"),
        (_q(metric="cpu", start="-30d", step="60"), "points"),
        (_q(metric="cpu", agg="median"), "agg"),
        ({"metric": ["cpu", "memory"]}, "more than once"),
    ]
    for args, message in cases:
        with pytest.raises(QueryError, match=message):
            parse_range(args, NOW)


def test_top_and_agents() -> None:
    assert parse_top(_q(metric="logs_in")).n == 10
    for n in ("0", "1001", "x"):
        with pytest.raises(QueryError):
            parse_top(_q(metric="logs_in", n=n))
    assert parse_agents({"agent": ["a"], "agents": ["b,c,"]}) == ["a", "b", "c"]
    assert parse_agents({}) is None


def test_blueprint_answers_json_errors_when_the_metrics_process_is_down(tmp_path: Path) -> None:
    srv = InProcessServer(tmp_path, metrics=True)
    try:
        viewer = srv.create_token("viewer")
        for path in ("query", "latest", "top", "health"):
            r = srv.client.get(f"/api/v1/metrics/{path}?metric=cpu", headers=srv.auth(viewer))
            assert r.status_code == 503, path
            assert r.get_json()["error"]["code"] == "metrics_unavailable"
        r = srv.client.get("/api/v1/metrics/query?metric=cpu")
        assert r.status_code == 401 and r.get_json()["error"]["code"] == "unauthorized"
        enroll = srv.create_token("enroll")
        r = srv.client.get("/api/v1/metrics/query?metric=cpu", headers=srv.auth(enroll))
        assert r.status_code == 403
    finally:
        srv.close()
