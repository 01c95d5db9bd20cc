"""deploy/kubernetes/scale-out: parsed with PyYAML; the server runs as stateless replicas whose args are
a real `ctrltower server` command line and whose state comes from the environment the CLI reads."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from tests.reconciler.test_deploy import check_args, docs

ROOT = Path(__file__).resolve().parents[2]
DIR = ROOT / "deploy" / "kubernetes" / "scale-out"


def _docs() -> dict[str, dict[str, Any]]:
    return docs(DIR)


def test_kustomization_lists_every_manifest() -> None:
    k = yaml.safe_load((DIR / "kustomization.yaml").read_text())
    assert set(k["resources"]) == {p.name for p in DIR.glob("*.yaml")} - {"kustomization.yaml"}


def test_replicas_are_stateless_and_share_postgresql_and_the_lake() -> None:
    docs = _docs()
    dep = docs["Deployment/ctrltower-server"]
    assert dep["spec"]["replicas"] >= 2 and dep["spec"]["strategy"]["type"] == "RollingUpdate"
    assert dep["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    spec = dep["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    check_args(container["args"])
    env = {e["name"]: e for e in container["env"]}
    assert "secretKeyRef" in env["CTRLTOWER_DATABASE_URL"]["valueFrom"]  # the CLI's envvar
    assert env["CTRLTOWER_METRICS_LAKE"]["value"].startswith("s3://")
    assert "secretKeyRef" in env["AWS_SECRET_ACCESS_KEY"]["valueFrom"]
    # no persistent volume: the data dir is an emptyDir
    assert all("persistentVolumeClaim" not in v for v in spec["volumes"])
    data_dir = next(a for a in container["args"] if a.startswith("--data-dir=")).split("=", 1)[1]
    assert {m["mountPath"] for m in container["volumeMounts"]} == {data_dir}
    pdb = docs["PodDisruptionBudget/ctrltower-server"]
    assert pdb["spec"]["selector"]["matchLabels"] == dep["spec"]["selector"]["matchLabels"]
    assert docs["Service/ctrltower"]["spec"]["selector"] == dep["spec"]["selector"]["matchLabels"]
