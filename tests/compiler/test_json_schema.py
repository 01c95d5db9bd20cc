"""The exported JSON Schema (schemas/json/) accepts the example repo and rejects what the compiler rejects,
so an editor pointed at it (the `# yaml-language-server: $schema=` line) flags mistakes as you type."""

from __future__ import annotations

import json
import re
from pathlib import Path

import jsonschema
import pytest
import yaml

from tests.compiler.helpers import EXAMPLE, ROOT

SCHEMA_LINE = re.compile(r"^# yaml-language-server: \$schema=(\S+)$", re.M)


def example_files() -> list[Path]:
    return sorted(p for p in EXAMPLE.rglob("*.yaml") if ".github" not in p.parts)


def schema_for(path: Path) -> dict[str, object]:
    match = SCHEMA_LINE.search(path.read_text())
    assert match, f"{path.relative_to(ROOT)} does not point editors at a schema"
    target = (path.parent / match.group(1)).resolve()
    assert target.is_file(), f"{path.relative_to(ROOT)} points at a missing schema {match.group(1)}"
    return dict(json.loads(target.read_text()))


@pytest.mark.parametrize("path", example_files(), ids=lambda p: p.relative_to(EXAMPLE).as_posix())
def test_example_file_is_valid_against_the_schema_it_names(path: Path) -> None:
    jsonschema.validate(yaml.safe_load(path.read_text()), schema_for(path))


def test_schema_rejects_a_typo_and_a_bad_class() -> None:
    path = EXAMPLE / "pipelines" / "app-logs.yaml"
    schema = schema_for(path)
    doc = yaml.safe_load(path.read_text())
    typo = {**doc, "edgez": []}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(typo, schema)
    bad_class = {**doc, "nodes": [{**doc["nodes"][0], "class": "reciever"}, *doc["nodes"][1:]]}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad_class, schema)
