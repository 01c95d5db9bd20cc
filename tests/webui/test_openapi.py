"""The OpenAPI document is true to the routes, every endpoint is documented, and fuzzing it finds no 5xx."""

from __future__ import annotations

import re
from pathlib import Path

import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.generation.modes import GenerationMode
from schemathesis.specs.openapi.checks import positive_data_acceptance

from tests.conftest import ROOT
from tests.support.server import InProcessServer
from tests.webui.helpers import group, pipeline, publish, registration, sha
from webui.openapi import api_rules


def test_document_matches_registered_routes(tmp_path: Path) -> None:
    srv = InProcessServer(tmp_path, ui=True, metrics=True)  # with the other parts' blueprints, if present
    doc = srv.client.get("/api/openapi.json").json
    documented = {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops}
    registered = {(m, p) for m, p, _ in api_rules(srv.app)}
    assert documented == registered
    assert ("GET", "/api/agent/v1/agents/{agent_id}/config") in registered
    # every server-owned operation says which roles may call it
    for path, ops in doc["paths"].items():
        if path.startswith("/api/v1/metrics") or path in ("/api/health", "/api/openapi.json"):
            continue
        for method, op in ops.items():
            assert op.get("x-roles"), f"{method} {path} has no roles"
            assert "summary" in op


def test_every_server_endpoint_is_in_docs_api_md(tmp_path: Path) -> None:
    srv = InProcessServer(tmp_path)
    text = (ROOT / "docs" / "api.md").read_text()
    for method, path, _ in api_rules(srv.app):
        assert f"`{method} {path}" in text, f"{method} {path} is not documented in docs/api.md"


def test_cli_commands_are_documented() -> None:
    text = (ROOT / "docs" / "server.md").read_text()
    for command in (
        "ctrltower server",
        "ctrltower token create",
        "ctrltower token list",
        "ctrltower token revoke",
    ):
        assert command in text
    for option in re.findall(r'"(--[a-z-]+)"', (ROOT / "ctrltower" / "cmd_server.py").read_text()):
        assert option in text, f"option {option} is not documented in docs/server.md"


def _fuzz(
    srv: InProcessServer,
    mode: GenerationMode,
    examples: int,
    *,
    token: str | None = None,
    path_regex: str | None = None,
    path_parameters: dict[str, str] | None = None,
) -> dict[tuple[str, int], int]:
    schema = schemathesis.openapi.from_wsgi("/api/openapi.json", srv.app)
    if path_regex:
        schema = schema.include(path_regex=path_regex)
    seen: dict[tuple[str, int], int] = {}
    strategy = schema.as_strategy(
        mode, headers=srv.auth(token or srv.admin_token), path_parameters=path_parameters
    )

    @given(case=strategy)
    @settings(max_examples=examples, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    def run(case: schemathesis.Case) -> None:
        # Default checks: no 5xx, documented status codes and content types, responses match their
        # schemas, schema-violating requests rejected. Not "schema-valid requests accepted": the server
        # rightly refuses some (a config_hash that is not the config's sha256, unknown ids).
        resp = case.call_and_validate(excluded_checks=[positive_data_acceptance])
        key = (case.method, resp.status_code)
        seen[key] = seen.get(key, 0) + 1
        if resp.status_code >= 400:
            body = resp.json()
            assert set(body) == {"error"} and {"code", "message"} <= set(body["error"])

    run()
    return seen


def populated(tmp_path: Path) -> tuple[InProcessServer, dict[str, str]]:
    """A server with an agent, a revision with group and pipeline `edge`: path ids that exist."""
    srv = InProcessServer(tmp_path)
    reg = srv.client.post(
        "/api/agent/v1/agents",
        json=registration("inst-fuzz-00", {"env": "prod"}),
        headers=srv.auth(srv.enroll_token),
    ).json
    body = publish(sha(1), None, [group("edge", {"env": "prod"})], [pipeline("edge", ["edge"])])
    assert (
        srv.client.post("/api/v1/revisions", json=body, headers=srv.auth(srv.admin_token)).status_code == 201
    )
    return srv, {"agent_id": reg["agent_id"], "sha": sha(1), "name": "edge"}


def test_fuzz_positive(tmp_path: Path) -> None:
    srv = InProcessServer(tmp_path / "empty")
    seen = _fuzz(srv, GenerationMode.POSITIVE, 30)
    assert any(status < 300 for _, status in seen), seen  # the fuzzer got past validation sometimes
    srv, ids = populated(tmp_path / "full")
    seen = _fuzz(srv, GenerationMode.POSITIVE, 60, path_parameters=ids)
    assert any(status < 300 for _, status in seen), seen


def test_fuzz_negative(tmp_path: Path) -> None:
    srv, ids = populated(tmp_path)
    seen = _fuzz(srv, GenerationMode.NEGATIVE, 60, path_parameters=ids)
    assert any(400 <= status < 500 for _, status in seen), seen


def test_fuzz_agent_api_with_an_agent_token(tmp_path: Path) -> None:
    """Status reports and config polls from a registered agent: bodies fuzzed, never a 5xx."""
    srv = InProcessServer(tmp_path)
    reg = srv.client.post(
        "/api/agent/v1/agents",
        json={"instance_id": "inst-fuzz-01", "hostname": "h"},
        headers=srv.auth(srv.enroll_token),
    ).json
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
        seen = _fuzz(
            srv,
            mode,
            50,
            token=reg["agent_token"],
            path_regex=r"^/api/agent/v1/agents/\{agent_id\}",
            path_parameters={"agent_id": reg["agent_id"]},
        )
        assert seen, mode
