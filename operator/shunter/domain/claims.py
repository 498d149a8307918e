"""Which PersistentVolumeClaims a job may mount as its checkpoint volume (pure).

A job's Pod 0 mounts one claim (shunter.domain.podspec.claim_name): the one it names
(`spec.checkpoint.claimName`), or `NAME-checkpoints`, which the operator creates for
it from `spec.checkpoint.size` or the operator's default size. Without a rule, anyone
allowed to create a TrainingJob could read and write every claim of the namespace
through either: by naming it, or by naming the job so that `NAME-checkpoints` is a
claim that already exists (the operator's create answers 409 AlreadyExists). Both
ways are judged by the one rule below, in the plan, in the API's submit, and again
where the operator's create finds a claim already there. A job may mount a claim only
when one of these holds:

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
- the claim belongs to this very job (an ownerReference with the job's uid): the
  `NAME-checkpoints` claim the operator created for it. Another job's claim is not
  this job's, and neither is a claim that merely has the right name.

What is not there yet: a claim the job names is waited for (ClaimMissing), blocking
no one, and judged when it appears (kubectl may apply both in one go, in either
order); the claim the operator creates for the job is fine absent, since the
operator then creates it, owned by the job.

A job deleted and created again under the same name finds its predecessor's
`NAME-checkpoints` (owned by a TrainingJob of that name with another uid) until the
garbage collector deletes it, which it does as soon as it sees the owner gone: the
job waits for that (ClaimReleasing), blocking no one, rather than failing. A claim
made up to look like that (an invented ownerReference) is deleted by the garbage
collector just the same, since no TrainingJob has that uid (or, if the claim has
other owners too, the dangling reference is dropped and the claim is judged like any
other): the wait ends, and nothing is mounted that the rule does not allow.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from shunter.domain.model import GROUP, KIND, JobSpec

CHECKPOINTS_LABEL = "shunter.dev/checkpoints"
ALLOWED_SETTING = "SHUNTER_ALLOWED_CLAIMS"
NOT_ALLOWED = "ClaimNotAllowed"
MISSING = "ClaimMissing"
RELEASING = "ClaimReleasing"


@dataclass(frozen=True)
class ClaimOwner:
    """One ownerReference of a claim."""

    api_version: str
    kind: str
    name: str
    uid: str

    @classmethod
    def parse(cls, raw: Mapping[str, Any]) -> ClaimOwner:
        return cls(raw.get("apiVersion", ""), raw.get("kind", ""), raw.get("name", ""),
                   raw.get("uid", ""))  # fmt: skip

    @property
    def training_job(self) -> bool:
        return self.kind == KIND and self.api_version.split("/")[0] == GROUP


@dataclass(frozen=True)
class ClaimView:
    namespace: str
    name: str
    labelled: bool  # shunter.dev/checkpoints: "true"
    owners: tuple[ClaimOwner, ...] = ()

    @classmethod
    def parse(cls, body: Mapping[str, Any]) -> ClaimView:
        meta = body["metadata"]
        labels = meta.get("labels") or {}
        return cls(
            namespace=meta["namespace"],
            name=meta["name"],
            labelled=labels.get(CHECKPOINTS_LABEL) == "true",
            owners=tuple(ClaimOwner.parse(o) for o in meta.get("ownerReferences") or ()),
        )


@dataclass(frozen=True)
class Claimant:
    """The job that would mount the claim."""

    name: str
    # Empty before the job exists (the API judges a submission before creating it).
    uid: str = ""
    # The claim is the job's own NAME-checkpoints, which the operator creates.
    creates: bool = False

    @classmethod
    def of(cls, name: str, spec: JobSpec, *, uid: str = "") -> Claimant:
        return cls(name=name, uid=uid, creates=not spec.checkpoint_claim)


@dataclass(frozen=True)
class ClaimVerdict:
    reason: str  # ClaimNotAllowed (for good) | ClaimMissing | ClaimReleasing (waits)
    message: str

    @property
    def refused(self) -> bool:
        return self.reason == NOT_ALLOWED


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
    job: Claimant,
) -> ClaimVerdict | None:
    """None when the job may mount the claim (or the operator may create it for the
    job); otherwise why not, or what it waits for (see the module doc)."""
    if f"{namespace}/{claim}" in allowed or f"{namespace}/*" in allowed:
        return None
    if found is None:
        if job.creates:
            return None
        return ClaimVerdict(
            MISSING, f"checkpoint claim {claim!r} does not exist in namespace {namespace!r}"
        )
    if found.labelled or (job.uid and any(o.uid == job.uid for o in found.owners)):
        return None
    earlier = [o for o in found.owners if o.training_job and o.name == job.name]
    if earlier:
        return ClaimVerdict(
            RELEASING,
            f"checkpoint claim {claim!r} still belongs to an earlier TrainingJob named"
            f" {job.name!r} (uid {earlier[0].uid}); waiting for Kubernetes to delete it",
        )
    why = "it exists and was not created for this job; " if job.creates else ""
    return ClaimVerdict(
        NOT_ALLOWED,
        f"checkpoint claim {claim!r} may not be mounted: {why}only claims labelled"
        f' {CHECKPOINTS_LABEL}: "true", listed in the operator\'s allowed claims'
        f" ({ALLOWED_SETTING}) or created by the operator for the job itself may be",
    )
