"""The objects of an admitted job, built from the job and its placement (pure).

Pods with deterministic names (`<job>-trainer` for one Pod, `<job>-trainer-<i>` for a
multi-node job): a retried create gets 409 AlreadyExists instead of starting a second
GPU Pod. Each Pod is pinned to the node admission chose for it (a required node
affinity on the node's name: the operator places, the scheduler binds and re-checks),
is controlled by its TrainingJob (garbage-collected with it), never restarts
(`restartPolicy: Never`: the operator decides about retries), asks for
`nvidia.com/gpu` as a limit (extended resources are limits-only) and gets the job's
grace period, so SIGTERM gives the trainer time to checkpoint.

A multi-node job also gets a headless Service named after it (stable DNS names for
its Pods, published before they are ready) and the environment torchrun expects,
as Kubeflow Trainer's PyTorch runtime sets it: MASTER_ADDR (Pod 0's DNS name),
MASTER_PORT, NNODES, NODE_RANK, NPROC_PER_NODE and WORLD_SIZE. The trainer image's
launcher reads them (trainer-image/README.md).

Checkpoints live on a PersistentVolumeClaim that outlives the Pods: the user's
(`spec.checkpoint.claimName`) or one the operator creates (`<job>-checkpoints`,
owned by the job, from `spec.checkpoint.size` or the operator's default size). Only
Pod 0 mounts it (rank 0 writes checkpoints and every rank loads through it), so a
ReadWriteOnce claim is enough. Without a claim and a size the directory is an
emptyDir and lives only as long as the Pod.

The Pod passes the `restricted` Pod Security Standard, so a namespace enforcing it
(as the chart's does) admits it: non-root (uid/gid 10001, the trainer image's user;
images built for Shunter should run as that uid or at least accept it), the runtime's
default seccomp profile, no privilege escalation, every capability dropped, and no
ServiceAccount token (a trainer never talks to the API server). fsGroup makes a
checkpoint volume that supports ownership changes writable by that user.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, overload

from shunter.domain.model import (
    API_VERSION,
    ATTEMPT_LABEL,
    GPU_RESOURCE,
    JOB_NAME_LABEL,
    JOB_UID_LABEL,
    KIND,
    MANAGED_BY,
    MANAGED_BY_LABEL,
    POD_INDEX_LABEL,
    Job,
    JobSpec,
)

CONTAINER_NAME = "trainer"
CHECKPOINT_VOLUME = "checkpoints"
# The report channel's token (shunter.domain.reports): its audience, volume and where
# the trainer finds it. The kubelet renews it at 80 % of its life.
REPORT_AUDIENCE = "shunter"
REPORT_VOLUME = "shunter-report-token"
REPORT_TOKEN_DIR = "/var/run/shunter/report"
REPORT_TOKEN_SECONDS = 3600
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


MASTER_PORT = 29500
CHECKPOINT_CLAIM_SUFFIX = "-checkpoints"


def pod_name(job_name: str, index: int = 0, *, nodes: int = 1) -> str:
    return f"{job_name}-trainer" if nodes == 1 else f"{job_name}-trainer-{index}"


def pod_names(job: Job) -> list[str]:
    return [pod_name(job.key.name, i, nodes=job.spec.nodes) for i in range(job.spec.nodes)]


def claim_name(job_name: str, spec: JobSpec, default_size: str | None = None) -> str | None:
    """The checkpoint claim Pod 0 mounts: the user's, the operator's, or none. (By name
    and spec, so the API can ask before the job exists; shunter.domain.claims judges
    whether the job may mount it.)"""
    if spec.checkpoint_claim:
        return spec.checkpoint_claim
    if spec.checkpoint_size or default_size:
        return f"{job_name}{CHECKPOINT_CLAIM_SUFFIX}"
    return None


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


def master_addr(job: Job) -> str:
    """Pod 0's stable DNS name through the job's headless Service."""
    first = pod_name(job.key.name, 0, nodes=job.spec.nodes)
    return f"{first}.{job.key.name}.{job.key.namespace}.svc"


def _env(job: Job, index: int, report_url: str | None = None) -> list[dict[str, Any]]:
    own: list[dict[str, Any]] = [
        {"name": "SHUNTER_JOB_NAME", "value": job.key.name},
        {"name": "SHUNTER_JOB_NAMESPACE", "value": job.key.namespace},
        {"name": "SHUNTER_JOB_UID", "value": job.uid},
        {"name": "SHUNTER_CHECKPOINT_DIR", "value": job.spec.checkpoint_mount_path},
    ]
    if report_url and index == 0:
        own += [
            {"name": "SHUNTER_REPORT_URL", "value": report_url},
            {"name": "SHUNTER_REPORT_TOKEN_FILE", "value": f"{REPORT_TOKEN_DIR}/token"},
            {"name": "SHUNTER_ATTEMPT", "value": str(job.status.attempts)},
        ]
    if job.member is not None and job.member.index is not None:  # a run of an array
        own += [{"name": "SHUNTER_ARRAY_INDEX", "value": str(job.member.index)}]
        if job.member.count is not None:
            own += [{"name": "SHUNTER_ARRAY_COUNT", "value": str(job.member.count)}]
    nodes, procs = job.spec.nodes, job.spec.processes_per_node
    if nodes > 1 or procs > 1:
        own += [
            {"name": "NNODES", "value": str(nodes)},
            {"name": "NODE_RANK", "value": str(index)},
            {"name": "NPROC_PER_NODE", "value": str(procs)},
            {"name": "WORLD_SIZE", "value": str(nodes * procs)},
            {"name": "MASTER_ADDR", "value": master_addr(job) if nodes > 1 else "127.0.0.1"},
            {"name": "MASTER_PORT", "value": str(MASTER_PORT)},
        ]
    mine = {e["name"] for e in own}
    # The job's own, plain or from a Secret of its namespace (a Pod can reference no
    # other namespace's): passed on as references, the kubelet reads the values.
    return [*own, *(e.to_raw() for e in job.spec.env if e.name not in mine)]


def _owner(job: Job) -> list[dict[str, Any]]:
    return [
        {
            "apiVersion": API_VERSION,
            "kind": KIND,
            "name": job.key.name,
            "uid": job.uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]


def _labels(job: Job) -> dict[str, str]:
    return {JOB_NAME_LABEL: job.key.name, JOB_UID_LABEL: job.uid, MANAGED_BY_LABEL: MANAGED_BY}


def _pin(node: str) -> dict[str, Any]:
    term = {"matchFields": [{"key": "metadata.name", "operator": "In", "values": [node]}]}
    return {
        "nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [term]}}
    }  # fmt: skip


def _report_token() -> dict[str, Any]:
    """The first Pod's identity on the report channel (shunter.domain.reports): a
    token the kubelet requests for this Pod and rotates, for the audience `shunter`
    only, so it opens nothing else (the Pod still mounts no Kubernetes API token)."""
    source = {"audience": REPORT_AUDIENCE, "expirationSeconds": REPORT_TOKEN_SECONDS,
              "path": "token"}  # fmt: skip
    return {"name": REPORT_VOLUME, "projected": {"sources": [{"serviceAccountToken": source}]}}


def build_pod(
    job: Job, index: int = 0, *, node: str | None = None, default_size: str | None = None,
    report_url: str | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Pod `index` of the job's current attempt, pinned to node (when given); the
    first Pod gets the report channel's address and token when `report_url` is set."""
    claim = claim_name(job.key.name, job.spec, default_size)
    labels = dict(job.spec.pod_labels)
    labels.update(_labels(job))
    labels.update({POD_INDEX_LABEL: str(index), ATTEMPT_LABEL: str(job.status.attempts)})
    container: dict[str, Any] = {
        "name": CONTAINER_NAME,
        "image": job.spec.image,
        "env": _env(job, index, report_url),
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
    if job.spec.nodes > 1:
        container["ports"] = [{"name": "rendezvous", "containerPort": MASTER_PORT}]
    volume: dict[str, Any] = {"name": CHECKPOINT_VOLUME, "emptyDir": {}}
    if claim and index == 0:
        volume = {"name": CHECKPOINT_VOLUME, "persistentVolumeClaim": {"claimName": claim}}
    volumes = [volume]
    if report_url and index == 0:
        volumes.append(_report_token())
        container["volumeMounts"].append(
            {"name": REPORT_VOLUME, "mountPath": REPORT_TOKEN_DIR, "readOnly": True})  # fmt: skip
    spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,
        "securityContext": copy.deepcopy(POD_SECURITY_CONTEXT),
        "terminationGracePeriodSeconds": job.spec.termination_grace_period_seconds,
        "containers": [container],
        "volumes": volumes,
        # GPU nodes are commonly tainted so only GPU workloads land there; the job may
        # tolerate more (and select nodes), e.g. to run on a dedicated pool.
        "tolerations": [
            {"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"},
            *(t.to_raw() for t in job.spec.tolerations),
        ],
    }
    if job.spec.node_selector:
        spec["nodeSelector"] = dict(job.spec.node_selector)
    if node:
        spec["affinity"] = _pin(node)
    if job.spec.nodes > 1:
        spec["hostname"] = pod_name(job.key.name, index, nodes=job.spec.nodes)
        spec["subdomain"] = job.key.name
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": pod_name(job.key.name, index, nodes=job.spec.nodes),
            "namespace": job.key.namespace,
            "labels": labels,
            "annotations": dict(job.spec.pod_annotations),
            "ownerReferences": _owner(job),
        },
        "spec": spec,
    }


def build_service(job: Job) -> dict[str, Any]:
    """The headless Service that gives a multi-node job's Pods stable DNS names."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": job.key.name,
            "namespace": job.key.namespace,
            "labels": _labels(job),
            "ownerReferences": _owner(job),
        },
        "spec": {
            "clusterIP": "None",
            "publishNotReadyAddresses": True,
            "selector": {JOB_NAME_LABEL: job.key.name, JOB_UID_LABEL: job.uid},
            "ports": [{"name": "rendezvous", "port": MASTER_PORT, "targetPort": MASTER_PORT}],
        },
    }


def build_claim(job: Job, *, size: str, storage_class: str | None) -> dict[str, Any]:
    """The checkpoint claim the operator creates, owned by (deleted with) the job."""
    spec: dict[str, Any] = {
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": size}},
    }
    if storage_class:
        spec["storageClassName"] = storage_class
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {
            "name": f"{job.key.name}{CHECKPOINT_CLAIM_SUFFIX}",
            "namespace": job.key.namespace,
            "labels": _labels(job),
            "ownerReferences": _owner(job),
        },
        "spec": spec,
    }


def build_objects(
    job: Job, *, default_size: str | None = None, storage_class: str | None = None,
    missing: Iterable[int] | None = None, report_url: str | None = None,
) -> tuple[dict[str, Any], ...]:  # fmt: skip
    """What a start of the job creates: its claim, its Service, then its Pods (only
    the `missing` indexes when given)."""
    objects: list[dict[str, Any]] = []
    if _claim_created(job, default_size):
        size = job.spec.checkpoint_size or default_size
        assert size is not None
        objects.append(build_claim(
            job, size=size, storage_class=job.spec.checkpoint_storage_class or storage_class,
        ))  # fmt: skip
    if job.spec.nodes > 1:
        objects.append(build_service(job))
    placement = job.status.placement
    for i in _indexes(job, missing):
        node = placement[i] if i < len(placement) else None
        objects.append(build_pod(job, i, node=node, default_size=default_size,
                                 report_url=report_url))  # fmt: skip
    return tuple(objects)


def _claim_created(job: Job, default_size: str | None) -> bool:
    """Whether a start creates the job's checkpoint claim (one it names is its own)."""
    return bool(claim_name(job.key.name, job.spec, default_size)) and not job.spec.checkpoint_claim


def _indexes(job: Job, missing: Iterable[int] | None) -> Sequence[int]:
    return range(job.spec.nodes) if missing is None else sorted(missing)


class Objects(Sequence[dict[str, Any]]):
    """What a start creates (`build_objects`), built each time it is read rather than
    kept: a decision waits for its write, with tens of thousands of others in a large
    admission, and a Pod manifest is about 25 dicts and lists (about 5 KB); this holds
    the job and the settings it is built from. Reads as the tuple build_objects gives
    (equal to it, indexable, iterable); each read builds new dicts."""

    __slots__ = ("_default_size", "_job", "_missing", "_report_url", "_storage_class")

    def __init__(self, job: Job, *, default_size: str | None = None,
                 storage_class: str | None = None, missing: Iterable[int] | None = None,
                 report_url: str | None = None) -> None:  # fmt: skip
        self._job, self._default_size, self._storage_class = job, default_size, storage_class
        self._missing = None if missing is None else tuple(sorted(missing))
        self._report_url = report_url

    def build(self) -> tuple[dict[str, Any], ...]:
        return build_objects(self._job, default_size=self._default_size,
                             storage_class=self._storage_class, missing=self._missing,
                             report_url=self._report_url)  # fmt: skip

    def __len__(self) -> int:
        job = self._job
        return (_claim_created(job, self._default_size) + (job.spec.nodes > 1)
                + len(_indexes(job, self._missing)))  # fmt: skip

    @overload
    def __getitem__(self, index: int) -> dict[str, Any]: ...
    @overload
    def __getitem__(self, index: slice) -> tuple[dict[str, Any], ...]: ...
    def __getitem__(self, index: int | slice) -> dict[str, Any] | tuple[dict[str, Any], ...]:
        return self.build()[index]

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.build())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Objects | tuple):
            return self.build() == tuple(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # as a tuple of dicts: not hashable

    def __repr__(self) -> str:
        return f"Objects{self.build()!r}"
