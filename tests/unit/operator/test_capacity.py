"""Capacity and placement (pure): pools, foreign Pods, best fit, gangs, the messages."""

from __future__ import annotations

import random
from dataclasses import replace

from shunter.domain.capacity import Capacity, pod_need
from shunter.domain.model import Job, Toleration
from shunter.domain.nodes import PodUsage, Resources, Taint, quantity
from shunter.operator.book import JobBook
from tests.support.builders import a_node, a_training_job, gpu_nodes


def test_quantities():
    assert quantity("500m", milli=True) == 500
    assert quantity("4", milli=True) == 4000
    assert quantity("16Gi") == 16 * 2**30
    assert quantity("1.5", milli=True) == 1500
    assert quantity("8") == 8
    # A real kubelet reports memory in Ki (upper case K: binary); k is decimal.
    assert quantity("24683664Ki") == 24683664 * 2**10
    assert quantity("2k") == 2000
    assert quantity("129e6") == 129 * 10**6
    assert quantity("1.5e3", milli=True) == 1_500_000


def test_a_job_larger_than_every_node_says_so_with_numbers():
    capacity = Capacity.build(gpu_nodes(4, gpus=8), (), ())
    job = a_training_job("big").with_gpus(64).job()
    assert capacity.never_fits(job) == (
        "needs 64 GPUs on one node; the largest node in pool gpu has 8"
    )
    assert capacity.place(job) is None
    assert capacity.never_fits(a_training_job("ok").with_gpus(8).job()) is None


def test_foreign_pods_and_admitted_jobs_hold_their_gpus():
    nodes = gpu_nodes(2, gpus=8)
    foreign = [PodUsage("u1", "gpu-node-0", Resources(gpus=8))]
    running = a_training_job("r").with_gpus(4).in_phase("running", placement=["gpu-node-1"]).job()
    capacity = Capacity.build(nodes, foreign, [running])
    assert capacity.free["gpu-node-0"].gpus == 0
    assert capacity.free["gpu-node-1"].gpus == 4
    assert capacity.place(a_training_job("a").with_gpus(4).job()) == ("gpu-node-1",)
    assert capacity.place(a_training_job("b").with_gpus(5).job()) is None
    assert capacity.why_not_now(a_training_job("b").with_gpus(5).job()) == (
        "needs 5 GPUs on one node; the most free in pool gpu is 4"
    )


def test_best_fit_fills_the_fullest_node_that_fits():
    nodes = gpu_nodes(3, gpus=8)
    held = a_training_job("h").with_gpus(6).in_phase("running", placement=["gpu-node-2"]).job()
    capacity = Capacity.build(nodes, (), [held])
    assert capacity.place(a_training_job("small").with_gpus(2).job()) == ("gpu-node-2",)


def test_a_gang_needs_distinct_nodes_each_with_room():
    nodes = gpu_nodes(4, gpus=8)
    gang = a_training_job("g").with_gpus(8).with_spec(nodes=4).job()
    assert Capacity.build(nodes, (), ()).place(gang) is not None
    busy = a_training_job("b").with_gpus(1).in_phase("running", placement=["gpu-node-3"]).job()
    capacity = Capacity.build(nodes, (), [busy])
    assert capacity.place(gang) is None
    assert capacity.never_fits(gang) is None  # it could run: it waits, it is not unschedulable
    assert (
        capacity.why_not_now(gang)
        == "needs 4 nodes with 8 GPUs free each; 3 of pool gpu have that now"
    )
    assert Capacity.build(nodes[:3], (), ()).never_fits(gang) == (
        "needs 4 nodes with 8 GPUs each; pool gpu has 3 such nodes"
    )


def test_pools_follow_selectors_taints_and_readiness():
    real = a_node(
        "real", gpus=0, labels={"shunter.dev/node-pool": "real"},
        taints=(Taint("shunter.dev/real-node", "true", "NoSchedule"),),
    )  # fmt: skip
    down = a_node("down", ready=False)
    capacity = Capacity.build([real, down, *gpu_nodes(1)], (), ())
    cpu_job = a_training_job("cpu").with_gpus(0).with_spec(
        nodeSelector={"shunter.dev/node-pool": "real"}).job()  # fmt: skip
    assert capacity.place(cpu_job) is None  # the taint is not tolerated
    tolerating = a_training_job("cpu2").with_gpus(0).with_spec(
        nodeSelector={"shunter.dev/node-pool": "real"},
        tolerations=[
            {"key": "shunter.dev/real-node", "operator": "Exists", "effect": "NoSchedule"}
        ],
    ).job()  # fmt: skip
    assert tolerating.spec.tolerations == (
        Toleration(key="shunter.dev/real-node", operator="Exists", effect="NoSchedule"),
    )
    assert capacity.place(tolerating) == ("real",)
    gpu_job = a_training_job("g").with_gpus(8).job()
    assert capacity.place(gpu_job) == ("gpu-node-0",)  # never the node that is not Ready


def test_a_node_with_a_condition_taint_is_in_the_pool_but_not_usable():
    # A new node keeps node.kubernetes.io/not-ready for a moment after its first Ready
    # heartbeat: the job could run there (no "cannot run" warning), not yet placed there.
    fresh = a_node(
        "fresh", taints=(Taint("node.kubernetes.io/not-ready", None, "NoSchedule"),)
    )  # fmt: skip
    capacity = Capacity.build([fresh], (), ())
    job = a_training_job("g").with_gpus(8).job()
    assert capacity.never_fits(job) is None
    assert capacity.place(job) is None
    assert capacity.why_not_now(job) == "needs 8 GPUs on one node; the most free in pool gpu is 0"
    tolerating = a_training_job("t").with_gpus(8).with_spec(
        tolerations=[{"key": "node.kubernetes.io/not-ready", "operator": "Exists"}]
    ).job()  # fmt: skip
    assert capacity.place(tolerating) == ("fresh",)
    assert Capacity.build([a_node("fresh")], (), ()).place(job) == ("fresh",)


def test_best_fit_is_the_fullest_then_the_name_for_one_pod_and_for_a_gang():
    # The first nodes of (free GPUs, free CPU, name) among those that fit, as a full
    # sort would give them, on random clusters.
    rng = random.Random(26)
    for _ in range(200):
        nodes = gpu_nodes(rng.randint(1, 12), gpus=8)
        held = [a_training_job(f"h{i}").with_gpus(rng.randint(1, 8))
                .in_phase("running", placement=[n.name]).job()
                for i, n in enumerate(nodes) if rng.random() < 0.6]  # fmt: skip
        capacity = Capacity.build(nodes, (), held)
        job = a_training_job("j").with_gpus(rng.randint(1, 8)).with_spec(
            nodes=rng.randint(1, 3)).job()  # fmt: skip
        free = capacity.free
        fits = sorted((free[n.name].gpus, free[n.name].cpu, n.name) for n in nodes
                      if free[n.name].gpus >= job.spec.gpus)  # fmt: skip
        want = (tuple(name for _, _, name in fits[: job.spec.nodes])
                if len(fits) >= job.spec.nodes else None)  # fmt: skip
        assert capacity.place(job) == want


def best_fit(capacity: Capacity, job: Job) -> tuple[str, ...] | None:
    """Placement by the definition: sort every usable node that fits by (free GPUs,
    free CPU, name) and take the first ones, one per Pod."""
    need, free = pod_need(job), capacity.free
    fits = sorted((free[n.name].gpus, free[n.name].cpu, n.name) for n in capacity.usable(job)
                  if free[n.name].covers(need))  # fmt: skip
    if len(fits) < job.spec.nodes:
        return None
    return tuple(name for _, _, name in fits[: job.spec.nodes])


def test_placement_on_a_mostly_idle_cluster_is_the_same_best_fit():
    # Large clusters where few nodes are held: placement looks one by one only at the
    # held ones and takes the idle ones from an order kept with the nodes. Mixed node
    # sizes (GPUs, CPU, memory), foreign Pods, gangs, CPU-only jobs, and a pass's takes
    # and gives: the same nodes as the definition, every time.
    rng = random.Random(2612)
    for _ in range(60):
        nodes = [a_node(f"n{i:03d}", gpus=rng.choice((0, 4, 8, 8)), cpu=rng.choice((16, 64)),
                        memory_gib=rng.choice((64, 512)))
                 for i in range(rng.randint(20, 120))]  # fmt: skip
        held = [a_training_job(f"h{i}").with_gpus(rng.randint(1, 4))
                .in_phase("running", placement=[n.name]).job()
                for i, n in enumerate(nodes)
                if n.allocatable.gpus and rng.random() < 0.1]  # fmt: skip
        foreign = [PodUsage(f"u{i}", n.name, Resources(cpu=rng.choice((1000, 15000))))
                   for i, n in enumerate(nodes) if rng.random() < 0.05]  # fmt: skip
        capacity = Capacity.build(nodes, foreign, held)
        assert capacity.touched is not None
        assert 2 * len(capacity.touched) <= len(nodes)  # the order is what is used
        placed: list[tuple[Job, tuple[str, ...]]] = []
        for step in range(30):
            if placed and rng.random() < 0.3:
                job, placement = placed.pop(rng.randrange(len(placed)))
                capacity.give(job, placement)
                continue
            job = a_training_job(f"j{step}").with_gpus(rng.choice((0, 1, 2, 4, 8))).with_spec(
                nodes=rng.choice((1, 1, 2, 3)), cpu=str(rng.choice((1, 8, 32))),
                memory=rng.choice(("1Gi", "100Gi"))).job()  # fmt: skip
            want = best_fit(capacity, job)
            assert capacity.place(job) == want
            if want is not None:
                capacity.take(job, want)
                placed.append((job, want))
            copied = capacity.copy()  # a what-if's copy places the same
            assert copied.place(job) == capacity.place(job)


def test_the_books_node_index_is_kept_until_a_node_changes():
    book = JobBook.of([], nodes=gpu_nodes(3))
    index = book.node_index()
    Capacity.build(index, (), ()).pool(a_training_job("a").job())
    assert index.pools  # what a pass looked up stays for the next
    assert book.node_index() is index
    book.put_node(book.nodes["gpu-node-0"])  # the same node again (a heartbeat)
    assert book.node_index() is index
    book.put_node(replace(book.nodes["gpu-node-0"], unschedulable=True))  # cordoned
    changed = book.node_index()
    assert changed is not index
    assert [n.name for n in Capacity.build(changed, (), ()).usable(a_training_job("a").job())] == [
        "gpu-node-1", "gpu-node-2"]  # fmt: skip
    book.remove_node(book.nodes["gpu-node-2"])
    assert book.node_index() is not changed
