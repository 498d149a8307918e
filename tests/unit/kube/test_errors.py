"""The API server's refusals, read once for the operator and the API (pure)."""

from __future__ import annotations

from shunter.kube.errors import Forbidden, Invalid, policy_denial, reason_of

POLICY_REFUSAL = (
    'trainingjobs.shunter.dev "x" is forbidden: ValidatingAdmissionPolicy'
    " 'shunter-trainingjobs' with binding 'shunter-trainingjobs' denied request:"
    " spec.image evil/x is not from an allowed registry (policy.imagePrefixes: reg/)"
)


def test_an_admission_policy_refusal_names_the_policy_and_keeps_the_rules_words():
    exc = Invalid("create trainingjobs x: 422 Invalid", status=422, detail=POLICY_REFUSAL)
    denial = policy_denial(exc)
    assert denial is not None
    assert denial.policy == "shunter-trainingjobs"
    assert denial.message == (
        "spec.image evil/x is not from an allowed registry (policy.imagePrefixes: reg/)"
    )
    assert reason_of(exc) == denial.message


def test_any_other_refusal_is_not_a_policys_and_is_passed_on_whole():
    quota = 'trainingjobs.shunter.dev "x" is forbidden: exceeded quota: jobs, requested: 1'
    exc = Forbidden("create trainingjobs x: 403 Forbidden", status=403, detail=quota)
    assert policy_denial(exc) is None
    assert reason_of(exc) == quota
