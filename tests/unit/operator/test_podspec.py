"""The trainer Pod built from a job (pure)."""

from __future__ import annotations

from shunter.domain.model import EnvVar
from shunter.domain.podspec import build_pod
from tests.support.builders import a_training_job


def test_pod_requests_gpus_never_restarts_and_belongs_to_the_job():
    job = (
        a_training_job("train-1", "ml")
        .with_gpus(4)
        .with_grace(45)
        .with_spec(
            cpu="8",
            memory="32Gi",
            command=["python", "-m", "t"],
            args=["--epochs", "3"],
            env=[{"name": "LR", "value": "0.1"}],
            maxRuntimeSeconds=3600,
        )
        .running_for("10s")
        .job()
    )
    pod = build_pod(job)
    assert pod["metadata"]["name"] == "train-1-trainer"
    assert pod["metadata"]["namespace"] == "ml"
    owner = pod["metadata"]["ownerReferences"][0]
    assert owner["uid"] == job.uid
    assert owner["controller"] is True
    assert pod["metadata"]["labels"]["shunter.dev/job-name"] == "train-1"
    assert pod["metadata"]["labels"]["shunter.dev/job-uid"] == job.uid
    assert pod["metadata"]["annotations"] == {"sim.shunter.dev/run-for": "10s"}
    spec = pod["spec"]
    assert spec["restartPolicy"] == "Never"
    assert spec["terminationGracePeriodSeconds"] == 45
    # maxRuntimeSeconds is the operator's to enforce (on kwok as on a real kubelet).
    assert "activeDeadlineSeconds" not in spec
    container = spec["containers"][0]
    assert container["resources"]["limits"] == {"nvidia.com/gpu": "4", "cpu": "8", "memory": "32Gi"}
    assert container["resources"]["requests"] == {"cpu": "8", "memory": "32Gi"}
    assert container["command"] == ["python", "-m", "t"]
    assert container["args"] == ["--epochs", "3"]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["LR"] == "0.1"
    assert env["SHUNTER_CHECKPOINT_DIR"] == "/checkpoints"
    assert container["volumeMounts"] == [{"name": "checkpoints", "mountPath": "/checkpoints"}]
    assert spec["volumes"] == [{"name": "checkpoints", "emptyDir": {}}]


def test_cpu_only_job_asks_for_no_gpu_and_a_claim_is_mounted():
    job = (
        a_training_job("cpu")
        .with_gpus(0)
        .with_spec(checkpoint={"claimName": "ckpt", "mountPath": "/data/ckpt"})
        .job()
    )
    pod = build_pod(job)
    assert "nvidia.com/gpu" not in pod["spec"]["containers"][0]["resources"]["limits"]
    assert pod["spec"]["volumes"] == [
        {"name": "checkpoints", "persistentVolumeClaim": {"claimName": "ckpt"}}
    ]
    assert pod["spec"]["containers"][0]["volumeMounts"][0]["mountPath"] == "/data/ckpt"


def test_user_env_cannot_override_the_operator_variables():
    job = a_training_job("j").with_spec(env=[{"name": "SHUNTER_JOB_NAME", "value": "x"}]).job()
    env = build_pod(job)["spec"]["containers"][0]["env"]
    assert [e["value"] for e in env if e["name"] == "SHUNTER_JOB_NAME"] == ["j"]


def test_pod_meets_the_restricted_pod_security_standard():
    pod = build_pod(a_training_job("j").job())
    spec = pod["spec"]
    assert spec["automountServiceAccountToken"] is False
    security = spec["securityContext"]
    assert security["runAsNonRoot"] is True
    assert security["runAsUser"] == 10001 != 0
    assert security["seccompProfile"] == {"type": "RuntimeDefault"}
    for container in spec["containers"]:
        assert container["securityContext"] == {
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
        }
    # Two Pods never share (mutable) security settings.
    build_pod(a_training_job("k").job())["spec"]["securityContext"]["runAsUser"] = 0
    assert build_pod(a_training_job("j").job())["spec"]["securityContext"]["runAsUser"] == 10001


def test_node_selector_and_tolerations_reach_the_pod():
    job = (
        a_training_job("placed")
        .with_spec(
            nodeSelector={"shunter.dev/node-pool": "real"},
            tolerations=[
                {"key": "shunter.dev/real-node", "operator": "Exists", "effect": "NoSchedule"},
                {"key": "zone", "operator": "Equal", "value": "a", "effect": "NoExecute",
                 "tolerationSeconds": 30},
            ],
        )
        .job()
    )  # fmt: skip
    spec = build_pod(job)["spec"]
    assert spec["nodeSelector"] == {"shunter.dev/node-pool": "real"}
    assert spec["tolerations"] == [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
        {"key": "shunter.dev/real-node", "operator": "Exists", "effect": "NoSchedule"},
        {"key": "zone", "operator": "Equal", "value": "a", "effect": "NoExecute",
         "tolerationSeconds": 30},
    ]  # fmt: skip
    unplaced = build_pod(a_training_job("anywhere").job())["spec"]
    assert "nodeSelector" not in unplaced
    assert len(unplaced["tolerations"]) == 1


SECRET_ENV = [
    {"name": "LR", "value": "0.1"},
    {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "hub", "key": "token"}}},
    {"name": "EXTRA", "valueFrom": {"secretKeyRef": {"name": "hub", "key": "x", "optional": True}}},
    {"name": "EMPTY"},
]


def test_env_from_a_secret_is_passed_on_as_a_reference_in_order():
    """The Pod names the Secret's key; the kubelet reads it (nobody here does)."""
    job = a_training_job("j").with_spec(env=SECRET_ENV).job()
    env = build_pod(job)["spec"]["containers"][0]["env"]
    mine = [e for e in env if not e["name"].startswith("SHUNTER_")]
    assert mine == [
        {"name": "LR", "value": "0.1"},
        {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "hub", "key": "token"}}},
        {"name": "EXTRA",
         "valueFrom": {"secretKeyRef": {"name": "hub", "key": "x", "optional": True}}},
        {"name": "EMPTY", "value": ""},
    ]  # fmt: skip


def test_secret_env_is_parsed_and_listed():
    spec = a_training_job("j").with_spec(env=SECRET_ENV).job().spec
    assert spec.env[1] == EnvVar("TOKEN", secret="hub", key="token")
    assert [e.name for e in spec.secret_env] == ["TOKEN", "EXTRA"]
    assert [EnvVar.parse(e.to_raw()) for e in spec.env] == list(spec.env)
