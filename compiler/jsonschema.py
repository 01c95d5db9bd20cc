"""JSON Schema of the repo file kinds, for editors (yaml-language-server) and `ctrltower schema`."""

from __future__ import annotations

import json

from pydantic import BaseModel

from schemas.repo import AgentGroup, Pipeline, RepoSettings, RolloutPolicy

SCHEMA_FILES: dict[str, tuple[type[BaseModel], str]] = {
    "agent-group.schema.json": (AgentGroup, "ctrltower AgentGroup (groups/*.yaml)"),
    "pipeline.schema.json": (Pipeline, "ctrltower Pipeline (pipelines/*.yaml)"),
    "rollout-policy.schema.json": (RolloutPolicy, "ctrltower RolloutPolicy (rollouts/*.yaml)"),
    "settings.schema.json": (RepoSettings, "ctrltower repo settings (ctrltower.yaml)"),
}


def json_schemas() -> dict[str, str]:
    """{file name: JSON text}; deterministic, so the committed copy can be checked for staleness."""
    out: dict[str, str] = {}
    for filename, (model, title) in SCHEMA_FILES.items():
        schema = model.model_json_schema(by_alias=True, mode="validation")
        schema["title"] = title
        schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
        out[filename] = json.dumps(schema, indent=2, sort_keys=True) + "\n"
    return out
