"""The local control plane simulates GPU nodes and pod lifecycles for real.

Each test drives the real API server, scheduler and kwok: GPU requests are counted
by the scheduler against the fake nodes' allocatable, and pods run, complete, fail
and terminate according to the kwok Stages in shunter/devcluster/stages.yaml.
"""

from __future__ import annotations

import time

import pytest
from kubernetes import client

from shunter.devcluster.nodes import GPU_RESOURCE
from tests.support.kube import read_pod_or_none
from tests.support.nodes import NodePool
from tests.support.polling import wait_for


@pytest.fixture
def core(kube_api: client.ApiClient) -> client.CoreV1Api:
    return client.CoreV1Api(kube_api)


def gpu_pod(
    name: str,
    *,
    gpus: int,
    annotations: dict[str, str] | None = None,
    labels: dict[str, str] | None = None,
    selector: dict[str, str] | None = None,
) -> client.V1Pod:
    return client.V1Pod(
        metadata=client.V1ObjectMeta(name=name, annotations=annotations, labels=labels),
        spec=client.V1PodSpec(
            restart_policy="Never",
            node_selector=selector,
            termination_grace_period_seconds=30,
            containers=[
                client.V1Container(
                    name="trainer",
                    image="shunter/trainer:test",
                    resources=client.V1ResourceRequirements(limits={GPU_RESOURCE: str(gpus)}),
                )
            ],
        ),
    )


def phase_of(core: client.CoreV1Api, name: str, namespace: str) -> str | None:
    pod = read_pod_or_none(core, name, namespace)
    return None if pod is None else pod.status.phase


def wait_phase(core: client.CoreV1Api, name: str, namespace: str, phase: str) -> client.V1Pod:
    wait_for(
        lambda: phase_of(core, name, namespace) == phase,
        timeout=60,
        what=f"pod {name} to be {phase}",
    )
    return core.read_namespaced_pod(name, namespace)


def test_gpu_pod_is_scheduled_on_a_gpu_node_and_runs(core: client.CoreV1Api, namespace: str):
    core.create_namespaced_pod(namespace, gpu_pod("two-gpus", gpus=2))

    pod = wait_phase(core, "two-gpus", namespace, "Running")

    node = core.read_node(pod.spec.node_name)
    assert int(node.status.allocatable[GPU_RESOURCE]) >= 2
    assert pod.status.container_statuses[0].state.running is not None


def test_pod_stays_pending_when_all_gpus_are_taken(
    core: client.CoreV1Api, namespace: str, node_pool: NodePool
):
    """On nodes of the test's own (other tests' Pods may hold GPUs on the shared ones,
    still terminating after their namespace went)."""
    nodes = node_pool.add(2, gpus=4)
    selector = node_pool.selector
    for i in range(len(nodes)):
        core.create_namespaced_pod(namespace, gpu_pod(f"fill-{i}", gpus=4, selector=selector))
    for i in range(len(nodes)):
        wait_phase(core, f"fill-{i}", namespace, "Running")

    core.create_namespaced_pod(namespace, gpu_pod("one-too-many", gpus=1, selector=selector))

    def unschedulable() -> bool:
        pod = core.read_namespaced_pod("one-too-many", namespace)
        return any(
            c.type == "PodScheduled" and c.status == "False" and c.reason == "Unschedulable"
            for c in pod.status.conditions or []
        )

    wait_for(unschedulable, timeout=60, what="the scheduler to report Unschedulable")
    pod = core.read_namespaced_pod("one-too-many", namespace)
    assert pod.status.phase == "Pending"
    assert pod.spec.node_name is None
    message = next(c.message for c in pod.status.conditions if c.type == "PodScheduled")
    assert GPU_RESOURCE in message

    # Freeing one node's GPUs lets the scheduler place the waiting pod.
    core.delete_namespaced_pod("fill-0", namespace)
    wait_phase(core, "one-too-many", namespace, "Running")


@pytest.mark.parametrize(
    ("annotation", "phase", "exit_code"),
    [("sim.shunter.dev/run-for", "Succeeded", 0), ("sim.shunter.dev/fail-after", "Failed", 1)],
)
def test_pod_finishes_after_the_annotated_time(
    core: client.CoreV1Api, namespace: str, annotation: str, phase: str, exit_code: int
):
    core.create_namespaced_pod(namespace, gpu_pod("timed", gpus=1, annotations={annotation: "3s"}))
    wait_phase(core, "timed", namespace, "Running")
    running_seen = time.monotonic()

    pod = wait_phase(core, "timed", namespace, phase)

    # Observed from outside: at least the annotated 3 s (less polling slack) passed.
    assert time.monotonic() - running_seen >= 2.5
    terminated = pod.status.container_statuses[0].state.terminated
    assert terminated is not None
    assert terminated.exit_code == exit_code


def test_graceful_delete_finishes_but_a_hung_pod_stays_terminating(
    core: client.CoreV1Api, namespace: str
):
    core.create_namespaced_pod(namespace, gpu_pod("normal", gpus=1))
    core.create_namespaced_pod(
        namespace, gpu_pod("hung", gpus=1, labels={"sim.shunter.dev/hang-on-delete": "true"})
    )
    wait_phase(core, "normal", namespace, "Running")
    wait_phase(core, "hung", namespace, "Running")

    core.delete_namespaced_pod("hung", namespace, grace_period_seconds=30)
    core.delete_namespaced_pod("normal", namespace, grace_period_seconds=30)

    # The well-behaved pod, deleted after the hung one, finishes its graceful delete...
    wait_for(
        lambda: read_pod_or_none(core, "normal", namespace) is None,
        timeout=60,
        what="the graceful delete to finish",
    )
    # ...while the hung one is still there, Terminating.
    hung = read_pod_or_none(core, "hung", namespace)
    assert hung is not None
    assert hung.metadata.deletion_timestamp is not None

    core.delete_namespaced_pod("hung", namespace, grace_period_seconds=0)
    wait_for(
        lambda: read_pod_or_none(core, "hung", namespace) is None,
        timeout=30,
        what="the forced delete to remove the pod",
    )
