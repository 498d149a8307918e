"""Submission-time check of a job's checkpoint claim (the operator's rule, asked early).

The rule is the operator's own (shunter.domain.claims), and so is the answer to
which claim a job mounts (shunter.domain.podspec.claim_name): the one it names, or
`NAME-checkpoints`, which the operator creates from the job's checkpoint size or its
default size (`SHUNTER_CHECKPOINT_SIZE`, which the API reads as the operator does).
The API reads the claim from the API server before creating the job, so a REST client
learns at once, with a 422 naming the claim and the rule, what a kubectl user learns
from the job's `failed` / ClaimNotAllowed. A claim the job names that does not exist
is refused here too: a REST submission cannot be waiting for a claim that the same
`kubectl apply` is about to create. A claim that still belongs to an earlier job of
the same name (ClaimReleasing) is not refused: it goes with that job, and the
operator waits for it.
"""

from __future__ import annotations

from collections.abc import Collection

from shunter.api.errors import InvalidJob
from shunter.domain.claims import MISSING, Claimant, ClaimView, judge_claim
from shunter.domain.model import JobSpec
from shunter.domain.podspec import claim_name
from shunter.kube import Kube, NotFound
from shunter.kube.resources import PVCS


async def check_claim(
    kube: Kube,
    *,
    namespace: str,
    name: str,
    spec: JobSpec,
    default_size: str | None,
    allowed: Collection[str],
) -> None:
    """Raise InvalidJob unless the job `name` of namespace, with spec, may mount the
    checkpoint claim it would get (if any)."""
    claim = claim_name(name, spec, default_size)
    if claim is None:
        return
    try:
        found: ClaimView | None = ClaimView.parse(await kube.get(PVCS, claim, namespace=namespace))
    except NotFound:
        found = None
    verdict = judge_claim(namespace, claim, found=found, allowed=allowed,
                          job=Claimant.of(name, spec))  # fmt: skip
    if verdict is not None and (verdict.refused or verdict.reason == MISSING):
        raise InvalidJob(
            f"The job was rejected: {verdict.message}",
            detail={"reason": verdict.reason, "claim": claim},
        )
