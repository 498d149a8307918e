"""Submission-time check of a job's checkpoint claim (the operator's rule, asked early).

The rule is the operator's own (shunter.operator.claims: labelled for Shunter, or in
the allowed claims); the API applies it before creating the job, reading the claim
from the API server, so a REST client learns at once, with a 422 naming the claim
and the rule, what a kubectl user learns from the job's `failed` / ClaimNotAllowed.
A claim that does not exist is refused here too: a REST submission cannot be waiting
for a claim that the same `kubectl apply` is about to create.
"""

from __future__ import annotations

from collections.abc import Collection

from shunter.api.errors import InvalidJob
from shunter.kube import Kube, NotFound
from shunter.kube.resources import PVCS
from shunter.operator.claims import ClaimView, judge_claim


async def check_claim(kube: Kube, *, namespace: str, claim: str, allowed: Collection[str]) -> None:
    """Raise InvalidJob unless a job of namespace may mount claim."""
    try:
        found: ClaimView | None = ClaimView.parse(await kube.get(PVCS, claim, namespace=namespace))
    except NotFound:
        found = None
    verdict = judge_claim(namespace, claim, found=found, allowed=allowed)
    if verdict is not None:
        raise InvalidJob(
            f"The job was rejected: {verdict.message}",
            detail={"reason": verdict.reason, "claim": claim},
        )
