"""The example repo compiles cleanly, and its edge groups run in the real collector."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from compiler.api import compile_repo
from schemas.common import config_hash
from tests.compiler.helpers import EXAMPLE, collector_validate, read_repo

EDGE_GROUPS = ["edge", "edge-canary"]


def test_example_repo_compiles_without_diagnostics() -> None:
    result = compile_repo(read_repo(EXAMPLE))
    assert result.diagnostics == []
    assert result.ok
    assert set(result.configs) >= {"edge", "edge-canary", "k8s-nodes", "gateway"}
    assert len(result.pipelines) >= 6
    signals = {s for p in result.pipelines for s in p.signals}
    assert signals == {"logs", "metrics", "traces"}
    for rev in result.groups:
        assert rev.config == result.configs[rev.name]
        assert rev.config_hash == config_hash(rev.config)
        assert rev.pipelines
    assert result.file_pipelines["pipelines/app-logs.yaml"] == ["app-logs"]


def test_edge_renders_only_test_binary_components() -> None:
    result = compile_repo(read_repo(EXAMPLE), only_groups=["edge"])
    assert list(result.configs) == ["edge"]
    doc = yaml.safe_load(result.configs["edge"])
    assert doc["receivers"] == {
        "filelog/app-logs.tail": {"include": ["${env:APP_LOG_DIR}/*.log"], "start_at": "end"}
    }
    assert list(doc["exporters"]) == ["otlphttp/app-logs.ship"]
    assert doc["exporters"]["otlphttp/app-logs.ship"]["endpoint"] == "${env:OTLP_HTTP_ENDPOINT}"
    prom = doc["service"]["telemetry"]["metrics"]["readers"][0]["pull"]["exporter"]["prometheus"]
    assert prom == {"host": "127.0.0.1", "port": "${env:CTRLTOWER_TELEMETRY_PORT:-8888}"}


def test_connector_is_exporter_in_one_pipeline_and_receiver_in_another() -> None:
    doc = yaml.safe_load(compile_repo(read_repo(EXAMPLE)).configs["gateway"])
    pipes = doc["service"]["pipelines"]
    red = "spanmetrics/gateway-traces.red"
    assert red in doc["connectors"]
    assert red in pipes["traces/gateway-traces"]["exporters"]
    assert red in pipes["metrics/gateway-traces"]["receivers"]


@pytest.mark.collector
@pytest.mark.parametrize("group", EDGE_GROUPS)
def test_real_collector_validates_edge_groups(group: str, collector_bin: Path, tmp_path: Path) -> None:
    config = tmp_path / f"{group}.yaml"
    config.write_text(compile_repo(read_repo(EXAMPLE)).configs[group])
    env = {"APP_LOG_DIR": str(tmp_path), "OTLP_HTTP_ENDPOINT": "http://127.0.0.1:9", "PATH": "/usr/bin:/bin"}
    proc = collector_validate(collector_bin, config, env)
    assert proc.returncode == 0, proc.stderr
