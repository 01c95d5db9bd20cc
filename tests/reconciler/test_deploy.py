"""deploy/kubernetes and the example PR workflow: parsed with PyYAML, the fields that matter checked,
and every command they run is a real `ctrltower` command with options it accepts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
import pytest
import yaml

from ctrltower.cli import cli

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "kubernetes"
WORKFLOWS = ROOT / "example-config-repo" / ".github" / "workflows"


def docs(directory: Path = K8S) -> dict[str, dict[str, Any]]:
    """The manifests in `directory` by `Kind/name` (the kustomization itself left out)."""
    out: dict[str, dict[str, Any]] = {}
    for path in sorted(directory.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc.get("kind") != "Kustomization":
                out[f"{doc['kind']}/{doc['metadata']['name']}"] = doc
    return out


def pod_spec(doc: dict[str, Any]) -> dict[str, Any]:
    if doc["kind"] == "CronJob":
        return dict(doc["spec"]["jobTemplate"]["spec"]["template"]["spec"])
    return dict(doc["spec"]["template"]["spec"])


def check_args(args: list[str]) -> None:
    """The container args parse as a ctrltower command (options exist, required ones present)."""
    name, rest = args[0], [a.split("=", 1)[0] for a in args[1:]]
    cmd = cli.get_command(click.Context(cli), name)
    assert cmd is not None, name
    known = {opt for p in cmd.params for opt in getattr(p, "opts", [])}
    for flag in rest:
        assert flag in known, f"{name}: unknown option {flag}"


def test_kustomization_lists_every_manifest() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    files = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kustomization["resources"]) == files


def test_reconciler_cronjob() -> None:
    cron = docs()["CronJob/ctrltower-reconciler"]
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"
    job = cron["spec"]["jobTemplate"]["spec"]
    assert job["backoffLimit"] == 0 and job["activeDeadlineSeconds"] > 0
    spec = pod_spec(cron)
    assert spec["restartPolicy"] == "Never"
    (container,) = spec["containers"]
    args = container["args"]
    assert args[0] == "reconcile"
    check_args(args)
    assert any(a.startswith("--cache-dir=") for a in args)
    source = next(a for a in args if a.startswith("--source="))
    assert "@" not in source  # credentials come from the environment, never the URL
    env = {e["name"]: e for e in container["env"]}
    assert "secretKeyRef" in env["CTRLTOWER_TOKEN"]["valueFrom"]
    assert "secretKeyRef" in env["CTRLTOWER_GIT_PASSWORD"]["valueFrom"]
    claim = spec["volumes"][0]["persistentVolumeClaim"]["claimName"]
    assert f"PersistentVolumeClaim/{claim}" in docs()
    # it signs with a private key from a Secret, mounted read-only and readable by its owner only
    key = next(a for a in args if a.startswith("--signing-key=")).split("=", 1)[1]
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert key.startswith(mounts["signing"]["mountPath"] + "/") and mounts["signing"]["readOnly"] is True
    assert volumes["signing"]["secret"]["defaultMode"] == 0o400


def test_server_deployment_service_and_volume() -> None:
    all_docs = docs()
    dep = all_docs["Deployment/ctrltower-server"]
    assert dep["spec"]["replicas"] == 1 and dep["spec"]["strategy"]["type"] == "Recreate"
    spec = pod_spec(dep)
    (container,) = spec["containers"]
    check_args(container["args"])
    data_dir = next(a for a in container["args"] if a.startswith("--data-dir=")).split("=", 1)[1]
    assert {m["mountPath"] for m in container["volumeMounts"]} == {data_dir}
    assert container["readinessProbe"]["httpGet"]["path"] == "/api/health"
    claim = spec["volumes"][0]["persistentVolumeClaim"]["claimName"]
    assert all_docs[f"PersistentVolumeClaim/{claim}"]["spec"]["accessModes"] == ["ReadWriteOnce"]
    svc = all_docs["Service/ctrltower"]
    assert svc["spec"]["selector"] == dep["spec"]["selector"]["matchLabels"]
    assert svc["spec"]["ports"][0]["targetPort"] == container["ports"][0]["name"]
    listen = next(a for a in container["args"] if a.startswith("--listen=")).rsplit(":", 1)[1]
    assert int(listen) == container["ports"][0]["containerPort"]


def test_agent_daemonset() -> None:
    ds = docs()["DaemonSet/ctrltower-agent"]
    spec = pod_spec(ds)
    (container,) = spec["containers"]
    check_args(container["args"])
    env = {e["name"]: e for e in container["env"]}
    assert "secretKeyRef" in env["CTRLTOWER_ENROLL_TOKEN"]["valueFrom"]
    assert env["CTRLTOWER_SERVER"]["value"].startswith("http://ctrltower.")
    assert "tier=k8s" in env["CTRLTOWER_LABELS"]["value"]  # the example repo's k8s-nodes group
    assert env["K8S_NODE_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName"
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    assert mounts["varlog"]["readOnly"] is True
    state = next(a for a in container["args"] if a.startswith("--state-dir=")).split("=", 1)[1]
    assert mounts["state"]["mountPath"] == state
    # it trusts the reconciler's public key from a ConfigMap (never a private key)
    trust = next(a for a in container["args"] if a.startswith("--trust-key=")).split("=", 1)[1]
    assert trust.startswith(mounts["trust"]["mountPath"] + "/") and trust.endswith(".pub")
    assert {v["name"]: v for v in spec["volumes"]}["trust"]["configMap"]["name"] == "ctrltower-trust"
    assert (
        ds["spec"]["selector"]["matchLabels"].items() <= ds["spec"]["template"]["metadata"]["labels"].items()
    )


@pytest.mark.parametrize("path", sorted(WORKFLOWS.glob("*.yml")), ids=lambda p: p.name)
def test_pr_workflow_runs_validate_and_plan(path: Path) -> None:
    wf = yaml.safe_load(path.read_text())
    triggers = wf[True] if True in wf else wf["on"]  # PyYAML reads the key `on` as True
    assert "pull_request" in triggers
    steps = [s for job in wf["jobs"].values() for s in job["steps"]]
    runs = "\n".join(s.get("run", "") for s in steps)
    assert "ctrltower validate" in runs
    assert "ctrltower plan" in runs and "--format markdown" in runs and "--format github" in runs
    assert wf["permissions"]["pull-requests"] == "write"
    checkout = next(s for s in steps if str(s.get("uses", "")).startswith("actions/checkout"))
    assert checkout["with"]["fetch-depth"] == 0  # plan needs the base commit
