"""Checkpoint claims on the real control plane: a job created with kubectl that names a
claim it may not mount fails (ClaimNotAllowed) without a Pod; a labelled or allowed
claim is mounted; a claim that does not exist yet is waited for."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

from shunter.domain.model import Job
from shunter.domain.podspec import build_claim
from shunter.domain.scope import Scope
from shunter.kube import Kube, connect
from shunter.operator.actions import Actions
from shunter.operator.book import JobBook
from shunter.operator.controller import Controller
from shunter.operator.rules import Rules
from shunter.operator.settings import Settings
from tests.support.builders import a_training_job, gpu_nodes
from tests.support.operator import Jobs, OperatorProcess
from tests.support.polling import wait_for


async def passed(controller: Controller) -> None:
    """One pass, and its writes landed."""
    await controller.reconcile_once()
    await controller.settled()


def make_claim(jobs: Jobs, name: str, *, labelled: bool) -> None:
    labels = {"shunter.dev/checkpoints": "true"} if labelled else {}
    jobs.core.create_namespaced_persistent_volume_claim(jobs.namespace, {
        "metadata": {"name": name, "labels": labels},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
    })  # fmt: skip


def claim_of(jobs: Jobs, pod: str) -> str | None:
    spec = jobs.core.read_namespaced_pod(pod, jobs.namespace).spec
    for volume in spec.volumes or ():
        if volume.persistent_volume_claim is not None:
            return str(volume.persistent_volume_claim.claim_name)
    return None


def test_only_claims_labelled_or_allowed_are_mounted(
    jobs: Jobs, start_operator: Callable[..., OperatorProcess]
):
    operator = start_operator(
        SHUNTER_MAX_RUNNING="5", SHUNTER_ALLOWED_CLAIMS=f"{jobs.namespace}/shared"
    )
    make_claim(jobs, "home", labelled=False)
    make_claim(jobs, "ckpt", labelled=True)
    make_claim(jobs, "shared", labelled=False)
    jobs.create(a_training_job("refused").with_spec(checkpoint={"claimName": "home"}))
    jobs.create(a_training_job("labelled").with_spec(checkpoint={"claimName": "ckpt"}))
    jobs.create(a_training_job("listed").with_spec(checkpoint={"claimName": "shared"}))

    refused = jobs.wait_phase("refused", "failed")["status"]
    assert refused["reason"] == "ClaimNotAllowed"
    assert "checkpoint claim 'home' may not be mounted" in refused["message"]
    assert 'shunter.dev/checkpoints: "true"' in refused["message"]
    # Events are posted off the reconcile path: shortly after the status, not with it.
    wait_for(lambda: "ClaimNotAllowed" in jobs.event_reasons("refused"), timeout=15,
             what="the ClaimNotAllowed Event")  # fmt: skip
    assert f"[Refuse] Job {jobs.namespace}/refused not admitted" in operator.log()

    # The others are admitted and their Pods mount the claim (unbound here: no
    # provisioner, so the scheduler leaves them pending, which is not the point).
    for name, claim in (("labelled", "ckpt"), ("listed", "shared")):
        wait_for(lambda n=name: f"{n}-trainer" in jobs.pod_names(), timeout=30,
                 what=f"{name}'s Pod")  # fmt: skip
        assert claim_of(jobs, f"{name}-trainer") == claim
    assert "refused-trainer" not in jobs.pod_names()


def test_a_job_waits_for_a_claim_that_does_not_exist_yet(
    jobs: Jobs, start_operator: Callable[..., OperatorProcess]
):
    start_operator(SHUNTER_MAX_RUNNING="1")
    jobs.create(a_training_job("early").with_spec(checkpoint={"claimName": "later"}))
    jobs.create(a_training_job("other").running_for("2s"))
    wait_for(lambda: jobs.status("early").get("reason") == "ClaimMissing", timeout=30,
             what="early to wait for its claim")  # fmt: skip
    assert "'later' does not exist" in jobs.status("early")["message"]
    jobs.wait_phase("other", "completed", timeout=30)  # it blocked no one

    make_claim(jobs, "later", labelled=True)
    jobs.wait_phase("early", "starting", timeout=30)
    wait_for(lambda: "early-trainer" in jobs.pod_names(), timeout=30, what="early's Pod")
    assert claim_of(jobs, "early-trainer") == "later"


def test_a_claim_appearing_unlabelled_fails_the_waiting_job(
    jobs: Jobs, start_operator: Callable[..., OperatorProcess]
):
    start_operator()
    jobs.create(a_training_job("early").with_spec(checkpoint={"claimName": "later"}))
    wait_for(lambda: jobs.status("early").get("reason") == "ClaimMissing", timeout=30,
             what="early to wait for its claim")  # fmt: skip
    make_claim(jobs, "later", labelled=False)
    assert jobs.wait_phase("early", "failed", timeout=30)["status"]["reason"] == "ClaimNotAllowed"


# -- the claim the operator creates (NAME-checkpoints) --------------------------------


def owner_uids(jobs: Jobs, claim: str) -> list[str]:
    meta = jobs.core.read_namespaced_persistent_volume_claim(claim, jobs.namespace).metadata
    return [o.uid for o in meta.owner_references or ()]


def test_a_claim_that_only_has_the_jobs_checkpoint_name_is_not_mounted(
    jobs: Jobs, start_operator: Callable[..., OperatorProcess]
):
    """NAME-checkpoints already there and not offered: refused whether the size comes
    from the job or from the operator's default, with no Pod; offered or absent (the
    operator then creates it, owned by the job): mounted."""
    start_operator(SHUNTER_MAX_RUNNING="5", SHUNTER_CHECKPOINT_SIZE="1Gi")
    make_claim(jobs, "sized-checkpoints", labelled=False)
    make_claim(jobs, "default-checkpoints", labelled=False)
    make_claim(jobs, "offered-checkpoints", labelled=True)
    jobs.create(a_training_job("sized").with_spec(checkpoint={"size": "1Gi"}))
    jobs.create(a_training_job("default"))
    jobs.create(a_training_job("offered"))
    fresh = jobs.create(a_training_job("fresh").with_spec(checkpoint={"size": "2Gi"}))

    for name in ("sized", "default"):
        refused = jobs.wait_phase(name, "failed")["status"]
        assert refused["reason"] == "ClaimNotAllowed"
        assert f"checkpoint claim '{name}-checkpoints' may not be mounted" in refused["message"]
        assert "was not created for this job" in refused["message"]
    for name in ("offered", "fresh"):
        wait_for(lambda n=name: f"{n}-trainer" in jobs.pod_names(), timeout=30,
                 what=f"{name}'s Pod")  # fmt: skip
        assert claim_of(jobs, f"{name}-trainer") == f"{name}-checkpoints"
    assert owner_uids(jobs, "fresh-checkpoints") == [fresh["metadata"]["uid"]]
    assert owner_uids(jobs, "sized-checkpoints") == []  # untouched
    assert "sized-trainer" not in jobs.pod_names()
    assert "default-trainer" not in jobs.pod_names()


def test_a_job_recreated_under_its_name_waits_for_its_predecessors_claim(
    jobs: Jobs, start_operator: Callable[..., OperatorProcess]
):
    """The deleted job's claim goes with it (garbage collection), but not at once: the
    new job waits (ClaimReleasing), blocking no one, then creates its own. A finalizer
    holds the old claim here so the wait is seen for sure."""
    start_operator(SHUNTER_MAX_RUNNING="5")
    sized = a_training_job("again").with_spec(checkpoint={"size": "1Gi"})
    first = jobs.create(sized)
    wait_for(lambda: "again-trainer" in jobs.pod_names(), timeout=30, what="the first Pod")
    hold = {"metadata": {"finalizers": ["example.com/hold"]}}
    jobs.core.patch_namespaced_persistent_volume_claim("again-checkpoints", jobs.namespace, hold)
    jobs.custom.delete_namespaced_custom_object(
        "shunter.dev", "v1alpha1", jobs.namespace, "trainingjobs", "again"
    )
    wait_for(lambda: not jobs.custom.list_namespaced_custom_object(
        "shunter.dev", "v1alpha1", jobs.namespace, "trainingjobs")["items"],
        timeout=30, what="the first job to be gone")  # fmt: skip

    second = jobs.create(sized)
    jobs.create(a_training_job("other"))
    wait_for(lambda: jobs.status("again").get("reason") == "ClaimReleasing", timeout=30,
             what="the new job to wait for the old claim")  # fmt: skip
    assert "earlier TrainingJob named 'again'" in jobs.status("again")["message"]
    assert first["metadata"]["uid"] in jobs.status("again")["message"]
    # It blocked no one ("starting" may already be "running" when looked at).
    wait_for(lambda: jobs.phase("other") in ("starting", "running", "completed"), timeout=30,
             what="other to be admitted")  # fmt: skip

    jobs.core.patch_namespaced_persistent_volume_claim(
        "again-checkpoints", jobs.namespace, {"metadata": {"finalizers": None}}
    )
    jobs.wait_phase("again", "starting", timeout=60)
    wait_for(lambda: "again-trainer" in jobs.pod_names(), timeout=30, what="the new Pod")
    assert owner_uids(jobs, "again-checkpoints") == [second["metadata"]["uid"]]


# -- the create that finds the claim already there (in process, the real API server) ---


def a_controller(kube: Kube, job: Job) -> Controller:
    """The operator's loop over a book that knows the job but not yet any claim: as when
    a claim is made after the informer's last event and before the operator's create."""
    settings = Settings(rules=Rules(), scope=Scope(watched=(job.key.namespace,)),
                        lease_namespace="default",
                        lease_name="unused", identity="pytest", database_url=None,
                        resync=timedelta(seconds=30))  # fmt: skip
    return Controller(Actions(kube), JobBook.of([job], nodes=gpu_nodes()), settings)


async def test_a_claim_made_just_before_the_create_is_judged_before_any_pod(
    kubeconfig: Path, jobs: Jobs
):
    kube = Kube(connect(kubeconfig))
    try:
        job = Job.parse(jobs.create(a_training_job("raced").with_spec(checkpoint={"size": "1Gi"})))
        make_claim(jobs, "raced-checkpoints", labelled=False)
        await passed(a_controller(kube, job))
        status = jobs.status("raced")
        assert status["phase"] == "failed"
        assert status["reason"] == "ClaimNotAllowed"
        assert "checkpoint claim 'raced-checkpoints' may not be mounted" in status["message"]
        assert jobs.pod_names() == []
    finally:
        await kube.close()


async def test_a_retried_create_of_the_jobs_own_claim_goes_on_to_the_pod(
    kubeconfig: Path, jobs: Jobs
):
    kube = Kube(connect(kubeconfig))
    try:
        job = Job.parse(
            jobs.create(a_training_job("retried").with_spec(checkpoint={"size": "1Gi"}))
        )
        # An earlier create of this job made it (and the operator stopped before the Pod).
        own = build_claim(job, size="1Gi", storage_class=None)
        jobs.core.create_namespaced_persistent_volume_claim(jobs.namespace, own)
        await passed(a_controller(kube, job))
        assert jobs.status("retried")["phase"] == "starting"
        assert jobs.pod_names() == ["retried-trainer"]
        assert claim_of(jobs, "retried-trainer") == "retried-checkpoints"
    finally:
        await kube.close()


async def test_an_earlier_jobs_claim_found_by_the_create_holds_the_pods_back(
    kubeconfig: Path, jobs: Jobs
):
    """A claim of a deleted job of the same name (its ownerReference names a uid no
    TrainingJob has): no Pod until it is gone, then the job's own claim and its Pod."""
    kube = Kube(connect(kubeconfig))
    try:
        job = Job.parse(jobs.create(a_training_job("reborn").with_spec(checkpoint={"size": "1Gi"})))
        earlier = build_claim(job, size="1Gi", storage_class=None)
        earlier["metadata"]["ownerReferences"][0]["uid"] = "00000000-0000-0000-0000-000000000000"
        earlier["metadata"]["finalizers"] = ["example.com/hold"]  # the GC may not take it yet
        jobs.core.create_namespaced_persistent_volume_claim(jobs.namespace, earlier)
        controller = a_controller(kube, job)
        await passed(controller)
        assert jobs.status("reborn")["phase"] == "starting"
        assert jobs.pod_names() == []

        jobs.core.patch_namespaced_persistent_volume_claim(
            "reborn-checkpoints", jobs.namespace, {"metadata": {"finalizers": None}}
        )
        claims = jobs.core.list_namespaced_persistent_volume_claim
        wait_for(lambda: not claims(jobs.namespace).items, timeout=30,
                 what="the earlier claim to be collected")  # fmt: skip
        controller.book.mark_all()
        await passed(controller)
        assert jobs.pod_names() == ["reborn-trainer"]
        assert owner_uids(jobs, "reborn-checkpoints") == [job.uid]
    finally:
        await kube.close()
