"""Whether a job may take environment variables from Secrets (pure).

`spec.env` entries may read a key of a Secret (`valueFrom.secretKeyRef`) instead of
carrying a value, so credentials need not sit in the TrainingJob, where everyone with
the aggregated `view` role reads them. Only Secrets of the job's own namespace: a Pod
can reference no other. The operator and the API pass the reference on and never read
a Secret; the trainer Pod's kubelet does.

The reach: the operator creates the Pod, so a job may read any Secret of its namespace
through it. That is what a user who may create Pods there can do anyway, but an
editor of TrainingJobs (the chart's editor role) may not create Pods. The installer
decides (`SHUNTER_ALLOW_SECRET_ENV`, the chart's `policy.secretEnv.allowed`, default
true, the operator's and the API's alike): off, a job naming a Secret fails
(SecretEnvNotAllowed) without a Pod, and REST answers 422. One switch rather than a
list of allowed Secrets here: which Secrets, which users and which namespaces belongs
to the installer's admission policy (a ValidatingAdmissionPolicy on TrainingJobs),
which sees the user; the operator does not.
"""

from __future__ import annotations

from shunter.operator.model import JobSpec

SETTING = "SHUNTER_ALLOW_SECRET_ENV"
NOT_ALLOWED = "SecretEnvNotAllowed"


def judge_env(spec: JobSpec, *, allowed: bool) -> str | None:
    """None when the job's environment is allowed as it is; otherwise why not."""
    secret = spec.secret_env
    if allowed or not secret:
        return None
    named = ", ".join(f"{e.name} (Secret {e.secret!r}, key {e.key!r})" for e in secret)
    return (
        "environment variables from Secrets are not allowed by the installer's policy"
        f" ({SETTING}=false): {named}"
    )
