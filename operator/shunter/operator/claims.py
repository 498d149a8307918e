"""Which PersistentVolumeClaims a job may mount as its checkpoint volume (pure).

`spec.checkpoint.claimName` mounts an existing claim into the trainer Pod; without a
rule, anyone allowed to create a TrainingJob could read and write every claim of the
namespace through it. A job may mount a claim only when one of these holds:

- the claim is labelled `shunter.dev/checkpoints: "true"`: whoever owns the claim
  (may label it) offers it to training jobs, namespace by namespace, self-service;
- the operator's settings list it (`SHUNTER_ALLOWED_CLAIMS`, the chart's
  `checkpoints.allowedClaims`: `namespace/name` or `namespace/*`): the installer's
  exception for claims that cannot carry the label (managed by another tool). A
  setting rather than a TrainingQueue field because only the installer, already
  trusted with every namespace Shunter manages, can widen it (a cluster-scoped queue
  could grant a claim of a namespace its editors do not own), and because a job's
  queue may change while it waits, which would make the answer depend on what the
  submitter chooses later;
- the claim belongs to this very job (its ownerReference): the `NAME-checkpoints`
  claim the operator creates for the job. Another job's claim is not this job's.

A claim that does not exist cannot be judged yet: the job waits (ClaimMissing),
blocking no one, and is judged when the claim appears (kubectl may apply both in
one go, in either order).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

CHECKPOINTS_LABEL = "shunter.dev/checkpoints"
ALLOWED_SETTING = "SHUNTER_ALLOWED_CLAIMS"
NOT_ALLOWED = "ClaimNotAllowed"
MISSING = "ClaimMissing"


@dataclass(frozen=True)
class ClaimView:
    namespace: str
    name: str
    labelled: bool  # shunter.dev/checkpoints: "true"
    owners: tuple[str, ...] = ()  # uids of its ownerReferences

    @classmethod
    def parse(cls, body: Mapping[str, Any]) -> ClaimView:
        meta = body["metadata"]
        labels = meta.get("labels") or {}
        return cls(
            namespace=meta["namespace"],
            name=meta["name"],
            labelled=labels.get(CHECKPOINTS_LABEL) == "true",
            owners=tuple(o.get("uid", "") for o in meta.get("ownerReferences") or ()),
        )


@dataclass(frozen=True)
class ClaimVerdict:
    reason: str  # ClaimNotAllowed | ClaimMissing
    message: str


def parse_allowed(raw: str | None) -> frozenset[str]:
    """`ns/name,ns2/*` -> the set of entries; raises ValueError naming a bad one."""
    entries = frozenset(e.strip() for e in (raw or "").split(",") if e.strip())
    for entry in entries:
        namespace, _, name = entry.partition("/")
        if not namespace or not name or "/" in name:
            raise ValueError(f"{ALLOWED_SETTING}: {entry!r} is not namespace/name or namespace/*")
    return entries


def judge_claim(
    namespace: str,
    claim: str,
    *,
    found: ClaimView | None,
    allowed: Collection[str],
    job_uid: str = "",
) -> ClaimVerdict | None:
    """None when the job may mount the claim; otherwise why not."""
    if f"{namespace}/{claim}" in allowed or f"{namespace}/*" in allowed:
        return None
    if found is None:
        return ClaimVerdict(
            MISSING, f"checkpoint claim {claim!r} does not exist in namespace {namespace!r}"
        )
    if found.labelled or (job_uid and job_uid in found.owners):
        return None
    return ClaimVerdict(
        NOT_ALLOWED,
        f"checkpoint claim {claim!r} may not be mounted: only claims labelled"
        f' {CHECKPOINTS_LABEL}: "true" or listed in the operator\'s allowed claims'
        f" ({ALLOWED_SETTING}) may be",
    )
