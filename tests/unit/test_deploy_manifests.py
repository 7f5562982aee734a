"""deploy/k8s validated offline against the Kubernetes schemas (kubernetes-validate, strict:
an unknown field fails), the KEDA ScaledObject checked by hand (its CRD schema is not in
kubernetes-validate), and the promises the manifests and deploy/swarm/stack.yaml make
checked against the code (grace above the job limit, drain hook, AOF, secrets, labels)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from elastiq.settings import Settings
from tests.conftest import require

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
K8S_VERSION = "1.32.0"


def docs() -> list[tuple[str, dict]]:
    out = []
    for path in sorted(K8S.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                out.append((path.name, doc))
    return out


def by_kind(kind: str) -> dict[str, dict]:
    return {d["metadata"]["name"]: d for _, d in docs() if d["kind"] == kind}


def test_every_kubernetes_object_validates_strictly():
    import kubernetes_validate

    checked = 0
    for _name, doc in docs():
        if doc["apiVersion"].startswith("keda.sh/"):
            continue
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
        checked += 1
    assert checked >= 12


def test_validation_catches_a_typo():
    import kubernetes_validate

    doc = by_kind("Deployment")["elastiq-worker"]
    bad = yaml.safe_load(yaml.safe_dump(doc))
    bad["spec"]["template"]["spec"]["terminationGracePeriodSecond"] = 10     # typo
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, K8S_VERSION, strict=True)


def _container(deployment: dict) -> dict:
    return deployment["spec"]["template"]["spec"]["containers"][0]


def test_worker_drains_before_it_goes_and_outlives_a_job():
    worker = by_kind("Deployment")["elastiq-worker"]
    spec = worker["spec"]["template"]["spec"]
    c = _container(worker)
    env = {e["name"]: e.get("value") for e in c["env"]}
    limit = float(env.get("ELASTIQ_JOB_TIME_LIMIT_S") or Settings().job_time_limit_s)
    assert spec["terminationGracePeriodSeconds"] > limit + 10
    hook = c["lifecycle"]["preStop"]["exec"]["command"]
    assert hook[:2] == ["elastiq", "drain"]
    wait = float(hook[hook.index("--wait-s") + 1])
    assert limit <= wait < spec["terminationGracePeriodSeconds"]
    assert env["ELASTIQ_WORKER_ID"] == "minilm-$(POD_NAME)"         # unique per pod, as preStop drains it
    assert "ELASTIQ_REDIS_PASSWORD_FILE" in env and "password" not in env["ELASTIQ_REDIS_URL"]
    assert not any(d["kind"] == "Service" and d["metadata"]["name"] == "elastiq-worker" for _, d in docs())
    assert c["securityContext"]["capabilities"]["drop"] == ["ALL"]


def test_redis_statefulset_aof_and_secret():
    redis = by_kind("StatefulSet")["redis"]
    args = " ".join(_container(redis)["args"])
    for flag in ("--appendonly yes", "--appendfsync everysec", "--maxmemory-policy noeviction", "--requirepass"):
        assert flag in args
    assert redis["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] == "data"
    # a memory limit without maxmemory: the kernel kills Redis when answers fill it, and it
    # loads the same data on restart. maxmemory must sit well under the limit (AOF rewrite fork)
    words = args.split()
    maxmemory = _mib(words[words.index("--maxmemory") + 1])
    assert maxmemory <= 0.8 * _mib(_container(redis)["resources"]["limits"]["memory"])
    secrets = by_kind("Secret")
    assert {"elastiq-redis", "elastiq-flower"} <= set(secrets)


def _mib(size: str) -> float:
    """Redis ("768mb", "1gb") and Kubernetes ("1Gi", "512Mi") sizes in MiB."""
    units = {"mb": 1, "gb": 1024, "mi": 1, "gi": 1024}
    number = size.rstrip("bBiImMgG")
    return float(number) * units[size[len(number):].lower()]


def test_keda_scaledobject_structure():
    """By hand: KEDA's CRD schema is not bundled with kubernetes-validate."""
    objs = [d for _, d in docs() if d["kind"] == "ScaledObject"]
    assert len(objs) == 1
    so = objs[0]
    assert so["apiVersion"] == "keda.sh/v1alpha1"
    spec = so["spec"]
    allowed = {"scaleTargetRef", "pollingInterval", "cooldownPeriod", "minReplicaCount", "maxReplicaCount",
               "fallback", "advanced", "triggers", "idleReplicaCount", "initialCooldownPeriod"}
    assert set(spec) <= allowed, set(spec) - allowed
    assert spec["scaleTargetRef"]["name"] in by_kind("Deployment")
    assert 0 <= spec["minReplicaCount"] <= spec["maxReplicaCount"]
    assert isinstance(spec["pollingInterval"], int) and spec["fallback"]["replicas"] >= 1
    trig = spec["triggers"][0]
    assert trig["type"] == "metrics-api" and trig["metricType"] in ("AverageValue", "Value")
    meta = trig["metadata"]
    assert set(meta) <= {"url", "format", "valueLocation", "targetValue", "activationTargetValue", "authMode"}
    assert meta["valueLocation"] == "desired" and meta["targetValue"] == "1" and meta["format"] == "json"
    # the URL names the autoscaler's Service and port, and the path the endpoint serves
    svc = by_kind("Service")["elastiq-autoscaler"]
    port = next(p["port"] for p in svc["spec"]["ports"] if p["name"] == "desired")
    assert meta["url"] == f"http://elastiq-autoscaler.elastiq.svc.cluster.local:{port}/desired/minilm"
    autoscaler = _container(by_kind("Deployment")["elastiq-autoscaler"])
    cmd = autoscaler["command"]
    assert cmd[cmd.index("--backend") + 1] == "none" and cmd[cmd.index("--desired-port") + 1] == str(port)


def test_network_policies_default_deny():
    pols = by_kind("NetworkPolicy")
    deny = pols["default-deny"]["spec"]
    assert deny["podSelector"] == {} and set(deny["policyTypes"]) == {"Ingress", "Egress"}
    assert "ingress" not in deny and "egress" not in deny


def test_swarm_stack_renders_and_keeps_its_promises():
    require(shutil.which("docker") is not None, "the docker CLI is not installed")
    proc = subprocess.run(["docker", "stack", "config", "-c", str(ROOT / "deploy/swarm/stack.yaml")],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    stack = yaml.safe_load(proc.stdout)["services"]
    worker = stack["worker"]
    assert worker["deploy"]["restart_policy"]["condition"] == "on-failure"
    assert worker["environment"]["ELASTIQ_WORKER_EXIT_WHEN_DRAINED"] == "1"
    assert worker["environment"]["ELASTIQ_WORKER_ID"] == "minilm-{{.Task.ID}}"
    assert worker["deploy"]["labels"] == {"elastiq.pool": "elastiq", "elastiq.group": "minilm"}
    assert worker["deploy"]["resources"]["reservations"]["cpus"]
    redis_cmd = " ".join(stack["redis"]["command"])
    assert "--appendonly yes" in redis_cmd and "--maxmemory-policy noeviction" in redis_cmd
    assert '--maxmemory "${ELASTIQ_REDIS_MAXMEMORY:-$(awk' in redis_cmd      # half the node unless set
    assert stack["autoscaler"]["environment"]["DOCKER_HOST"] == "tcp://docker-proxy:2375"
    proxy = stack["docker-proxy"]["environment"]
    assert proxy["ELASTIQ_PROXY_SCOPE"] == "services" and proxy["ELASTIQ_PROXY_LABELS"] == "elastiq.pool=elastiq"
    assert "docker.sock" not in str(stack["autoscaler"].get("volumes"))
    assert worker["image"] == stack["autoscaler"]["image"] == stack["flower"]["image"]
