"""The trainer Pod of an admitted job, built from the job alone (pure).

One Pod per job, with a deterministic name (`<job>-trainer`): a retried create gets
409 AlreadyExists instead of starting a second GPU Pod. The Pod is controlled by its
TrainingJob (garbage-collected with it), never restarts (`restartPolicy: Never`: a
failed trainer fails the job; resubmitting resumes from the checkpoint), asks for
`nvidia.com/gpu` as a limit (extended resources are limits-only) and gets the job's
grace period, so SIGTERM gives the trainer time to checkpoint.

The Pod passes the `restricted` Pod Security Standard, so a namespace enforcing it
(as the chart's does) admits it: non-root (uid/gid 10001, the trainer image's user;
images built for Shunter should run as that uid or at least accept it), the runtime's
default seccomp profile, no privilege escalation, every capability dropped, and no
ServiceAccount token (a trainer never talks to the API server). fsGroup makes a
checkpoint volume that supports ownership changes writable by that user.
"""

from __future__ import annotations

import copy
from typing import Any

from shunter.operator.model import (
    API_VERSION,
    GPU_RESOURCE,
    JOB_NAME_LABEL,
    JOB_UID_LABEL,
    KIND,
    MANAGED_BY,
    MANAGED_BY_LABEL,
    Job,
)

CONTAINER_NAME = "trainer"
CHECKPOINT_VOLUME = "checkpoints"
# The non-root user of trainer-image/Dockerfile.
TRAINER_UID = 10001

POD_SECURITY_CONTEXT: dict[str, Any] = {
    "runAsNonRoot": True,
    "runAsUser": TRAINER_UID,
    "runAsGroup": TRAINER_UID,
    "fsGroup": TRAINER_UID,
    "seccompProfile": {"type": "RuntimeDefault"},
}
CONTAINER_SECURITY_CONTEXT: dict[str, Any] = {
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
}


def pod_name(job_name: str) -> str:
    return f"{job_name}-trainer"


def _resources(job: Job) -> dict[str, Any]:
    limits: dict[str, str] = {}
    requests: dict[str, str] = {}
    if job.spec.gpus:
        limits[GPU_RESOURCE] = str(job.spec.gpus)
    for name, value in (("cpu", job.spec.cpu), ("memory", job.spec.memory)):
        if value:
            limits[name] = requests[name] = value
    resources: dict[str, Any] = {"limits": limits}
    if requests:
        resources["requests"] = requests
    return resources


def _env(job: Job) -> list[dict[str, str]]:
    own = [
        {"name": "SHUNTER_JOB_NAME", "value": job.key.name},
        {"name": "SHUNTER_JOB_NAMESPACE", "value": job.key.namespace},
        {"name": "SHUNTER_JOB_UID", "value": job.uid},
        {"name": "SHUNTER_CHECKPOINT_DIR", "value": job.spec.checkpoint_mount_path},
    ]
    mine = {e["name"] for e in own}
    return own + [{"name": k, "value": v} for k, v in job.spec.env if k not in mine]


def _checkpoint_volume(job: Job) -> dict[str, Any]:
    if job.spec.checkpoint_claim:
        return {
            "name": CHECKPOINT_VOLUME,
            "persistentVolumeClaim": {"claimName": job.spec.checkpoint_claim},
        }
    return {"name": CHECKPOINT_VOLUME, "emptyDir": {}}


def build_pod(job: Job) -> dict[str, Any]:
    labels = dict(job.spec.pod_labels)
    labels.update(
        {JOB_NAME_LABEL: job.key.name, JOB_UID_LABEL: job.uid, MANAGED_BY_LABEL: MANAGED_BY}
    )
    container: dict[str, Any] = {
        "name": CONTAINER_NAME,
        "image": job.spec.image,
        "env": _env(job),
        "resources": _resources(job),
        "volumeMounts": [{"name": CHECKPOINT_VOLUME, "mountPath": job.spec.checkpoint_mount_path}],
        # The trainer writes its final summary here; the operator reads it into status.
        "terminationMessagePath": "/dev/termination-log",
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "securityContext": copy.deepcopy(CONTAINER_SECURITY_CONTEXT),
    }
    if job.spec.command:
        container["command"] = list(job.spec.command)
    if job.spec.args:
        container["args"] = list(job.spec.args)
    spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,
        "securityContext": copy.deepcopy(POD_SECURITY_CONTEXT),
        "terminationGracePeriodSeconds": job.spec.termination_grace_period_seconds,
        "containers": [container],
        "volumes": [_checkpoint_volume(job)],
        # GPU nodes are commonly tainted so only GPU workloads land there; the job may
        # tolerate more (and select nodes), e.g. to run on a dedicated pool.
        "tolerations": [
            {"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"},
            *(t.to_raw() for t in job.spec.tolerations),
        ],
    }
    if job.spec.node_selector:
        spec["nodeSelector"] = dict(job.spec.node_selector)
    if job.spec.max_runtime_seconds:
        spec["activeDeadlineSeconds"] = job.spec.max_runtime_seconds
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": pod_name(job.key.name),
            "namespace": job.key.namespace,
            "labels": labels,
            "annotations": dict(job.spec.pod_annotations),
            "ownerReferences": [
                {
                    "apiVersion": API_VERSION,
                    "kind": KIND,
                    "name": job.key.name,
                    "uid": job.uid,
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": spec,
    }
