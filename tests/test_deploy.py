"""deploy/: the Kubernetes manifests validate against the Kubernetes schemas (offline, with
kubernetes-validate), probe the service's health endpoints on its port, and give the
service every environment variable its code reads, secrets by reference only."""

from __future__ import annotations

import ast
import json
import re

import kubernetes_validate
import pytest
import yaml

from tests.conftest import ROOT
from tunegate.core.params import load_params
from tunegate.serving.lifeline import INTERNAL

K8S = ROOT / "deploy/k8s"
VERSION = "1.37.0"
SECRET_WORDS = ("TOKEN", "KEY", "SECRET", "REQUEST_LOG")


def documents() -> list[tuple[str, dict]]:
    return [(p.name, d) for p in sorted(K8S.glob("*.yaml")) for d in yaml.safe_load_all(p.read_text()) if d]


def one(kind: str) -> dict:
    (doc,) = [d for _, d in documents() if d["kind"] == kind]
    return doc


def service_variables() -> set[str]:
    """Every TUNEGATE_* name the service's code reads (string constants in tunegate/serving/ and the
    kernel modules it takes its secrets from), less those it sets for its own processes."""
    names: set[str] = set()
    for path in [*ROOT.glob("tunegate/serving/*.py"), ROOT / "tunegate/core/deployment.py"]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and re.fullmatch(r"TUNEGATE_[A-Z_]+", str(node.value)):
                names.add(node.value)
    return names - set(INTERNAL)


@pytest.mark.parametrize("name", sorted(p.name for p in K8S.glob("*.yaml")))
def test_deploy_manifest_validates_against_the_kubernetes_schema(name):
    docs = [d for d in yaml.safe_load_all((K8S / name).read_text()) if d]
    assert docs
    for doc in docs:
        kubernetes_validate.validate(doc, VERSION, strict=True)  # raises on any schema error


def test_deploy_service_probes_ready_and_live_on_the_served_port():
    (container,) = one("Deployment")["spec"]["template"]["spec"]["containers"]
    port = load_params(ROOT / "params.yaml").serve.port
    assert [p["containerPort"] for p in container["ports"]] == [port]
    named = {p["name"]: p["containerPort"] for p in container["ports"]}
    ready, live = container["readinessProbe"]["httpGet"], container["livenessProbe"]["httpGet"]
    assert ready["path"] == "/readyz" and live["path"] == "/livez"
    assert named[ready["port"]] == named[live["port"]] == port
    (svc_port,) = one("Service")["spec"]["ports"]
    assert named[svc_port["targetPort"]] == port
    assert (
        one("HorizontalPodAutoscaler")["spec"]["scaleTargetRef"]["name"]
        == one("Deployment")["metadata"]["name"]
    )


def test_deploy_gives_every_variable_the_service_reads_and_secrets_by_reference():
    (container,) = one("Deployment")["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e for e in container["env"]}
    wanted = service_variables()
    assert {"TUNEGATE_REQUEST_LOG", "TUNEGATE_LOG_SECRET", "TUNEGATE_ADMIN_TOKEN"} <= wanted  # the scan works
    assert wanted <= set(env), f"not in deploy/k8s/deployment.yaml: {sorted(wanted - set(env))}"
    for name, entry in env.items():
        if name.startswith("TUNEGATE_") and any(word in name for word in SECRET_WORDS):
            assert "value" not in entry and "secretKeyRef" in entry["valueFrom"], name
    assert env["HF_HUB_OFFLINE"]["value"] == "1"


def test_deploy_canary_judge_runs_rollout_step_on_the_shared_log():
    job = one("CronJob")["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    (container,) = job["containers"]
    assert container["command"][-4:-2] == ["rollout", "step"]
    env = {e["name"]: e for e in container["env"]}
    (deployed,) = one("Deployment")["spec"]["template"]["spec"]["containers"]
    served = {e["name"]: e for e in deployed["env"]}
    assert env["TUNEGATE_REQUEST_LOG"]["valueFrom"] == served["TUNEGATE_REQUEST_LOG"]["valueFrom"]
    claims = {v["persistentVolumeClaim"]["claimName"] for v in job["volumes"]}
    assert claims == {
        v["persistentVolumeClaim"]["claimName"]
        for v in one("Deployment")["spec"]["template"]["spec"]["volumes"]
    }


MONITORING = ROOT / "deploy"


def monitoring_queries() -> list[str]:
    """Every PromQL expression of the Grafana dashboard, the alert rules and the Argo
    Rollouts AnalysisTemplate (tests/serving/test_service.py checks them against a
    running service's /metrics)."""
    dashboard = json.loads((MONITORING / "grafana/tunegate-dashboard.json").read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    rules = yaml.safe_load((MONITORING / "prometheus/rules.yaml").read_text())
    exprs += [r["expr"] for group in rules["groups"] for r in group["rules"]]
    analysis = yaml.safe_load((MONITORING / "prometheus/analysis-template.yaml").read_text())
    exprs += [m["provider"]["prometheus"]["query"] for m in analysis["spec"]["metrics"]]
    return exprs


def test_deploy_monitoring_files_parse_and_name_what_they_watch():
    dashboard = json.loads((MONITORING / "grafana/tunegate-dashboard.json").read_text())
    assert dashboard["uid"] and len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])
    titles = " ".join(p["title"] for p in dashboard["panels"]).lower()
    for watched in (
        "error rate",
        "p95 latency",
        "429",
        "tokens",
        "invalid",
        "abstained",
        "accuracy",
        "weights",
    ):
        assert watched in titles, watched
    rules = yaml.safe_load((MONITORING / "prometheus/rules.yaml").read_text())
    alerts = {r["alert"]: r for g in rules["groups"] for r in g["rules"]}
    assert (
        "TunegateCanaryErrorRate" in alerts and 'stage="canary"' in alerts["TunegateCanaryErrorRate"]["expr"]
    )
    assert all(r.get("for") and r["labels"].get("severity") for r in alerts.values())
    analysis = yaml.safe_load((MONITORING / "prometheus/analysis-template.yaml").read_text())
    assert (analysis["apiVersion"], analysis["kind"]) == ("argoproj.io/v1alpha1", "AnalysisTemplate")
    (metric,) = analysis["spec"]["metrics"]
    assert "result[0]" in metric["successCondition"] and metric["failureLimit"] >= 1
    for expr in monitoring_queries():  # balanced, and each names a tunegate or BentoML metric
        assert expr.count("(") == expr.count(")") and expr.count("{") == expr.count("}")
        assert re.search(r"\b(tunegate|bentoml)_[a-z_]+", expr), expr
