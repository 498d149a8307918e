"""The API's settings: the namespaces it serves (the operator's rule) and TLS."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from shunter.api.settings import ApiSettings
from shunter.domain.scope import Scope


def test_the_served_namespaces_come_from_the_operators_variables(
    monkeypatch: pytest.MonkeyPatch,
):
    monkeypatch.setenv("SHUNTER_API_WATCH_NAMESPACE", "ml,vision")
    monkeypatch.setenv("SHUNTER_EXCLUDE_NAMESPACES", "kube-system,shunter-system")
    settings = ApiSettings()
    assert settings.scope == Scope.parse("ml,vision", "kube-system,shunter-system")
    # The watch cache holds the first; the others are read live.
    assert settings.watch_namespace == "ml"


def test_serving_every_namespace_caches_them_all_but_kube_system_is_refused():
    settings = ApiSettings()
    assert settings.watch_namespace is None
    assert settings.scope.refusal("kube-system") is not None


def test_a_watch_list_that_is_all_excluded_is_refused():
    with pytest.raises(ValidationError, match="nothing to serve"):
        ApiSettings(watch_namespaces="kube-system")


def test_tls_needs_both_the_certificate_and_the_key():
    with pytest.raises(ValidationError, match="go together"):
        ApiSettings(tls_certfile="/etc/shunter/tls/tls.crt")
    both = ApiSettings(tls_certfile="/tls/tls.crt", tls_keyfile="/tls/tls.key")
    assert both.tls_keyfile == "/tls/tls.key"
