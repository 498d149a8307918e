"""Which namespaces are served: the watch list, the exclusions, and the settings."""

from __future__ import annotations

import pytest

from shunter.domain.scope import Scope
from shunter.operator.settings import Settings, SettingsError


def test_cluster_wide_by_default_except_kube_system():
    scope = Scope.parse(None)
    assert scope.cluster_wide
    assert scope.watch_targets() == (None,)
    assert scope.namespaces == ()
    assert scope.serves("ml")
    assert not scope.serves("kube-system")
    assert "excluded" in (scope.refusal("kube-system") or "")


def test_an_empty_exclusion_list_excludes_nothing():
    assert Scope.parse("", "").serves("kube-system")


def test_one_namespace_is_watched_alone():
    scope = Scope.parse("ml")
    assert scope.watch_targets() == ("ml",)
    assert scope.serves("ml")
    assert (
        scope.refusal("vision") == "namespace 'vision' is not served by this Shunter (it serves ml)"
    )


def test_a_list_is_trimmed_deduplicated_and_kept_in_order():
    scope = Scope.parse(" ml, vision,,ml ", "kube-system, shunter-system")
    assert scope.watched == ("ml", "vision")
    assert scope.excluded == {"kube-system", "shunter-system"}
    assert scope.watch_targets() == ("ml", "vision")


def test_exclusion_wins_over_the_watch_list():
    scope = Scope.parse("ml,shunter-system", "shunter-system")
    assert scope.watch_targets() == ("ml",)
    assert not scope.serves("shunter-system")
    assert "excluded" in (scope.refusal("shunter-system") or "")


def test_describe_says_what_is_served():
    assert Scope.parse(None, "kube-system,x").describe() == "all namespaces except kube-system,x"
    assert Scope.parse("ml", "").describe() == "namespaces ml"


def test_settings_read_both_variables(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("SHUNTER_NAMESPACE", "ml,vision")
    monkeypatch.setenv("SHUNTER_EXCLUDE_NAMESPACES", "kube-system,shunter-system")
    assert Settings.from_env().scope == Scope(
        watched=("ml", "vision"), excluded=frozenset({"kube-system", "shunter-system"})
    )


def test_settings_refuse_a_watch_list_that_is_all_excluded(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("SHUNTER_NAMESPACE", "kube-system")
    monkeypatch.delenv("SHUNTER_EXCLUDE_NAMESPACES", raising=False)
    with pytest.raises(SettingsError, match="nothing to serve"):
        Settings.from_env()


def test_estimates_are_on_by_default_and_may_be_turned_off(monkeypatch: pytest.MonkeyPatch):
    settings = Settings.from_env()
    assert settings.estimates is True
    assert settings.estimate_every.total_seconds() == 5
    monkeypatch.setenv("SHUNTER_ESTIMATES", "false")
    monkeypatch.setenv("SHUNTER_ESTIMATE_SECONDS", "30")
    settings = Settings.from_env()
    assert settings.estimates is False
    assert settings.estimate_every.total_seconds() == 30


def test_an_installs_key_names_what_it_serves_whatever_the_order_given():
    # The plan an install publishes is kept under this key (table queue_plan).
    assert Scope.parse("").key == "*"
    assert Scope.parse("vision, ml").key == Scope.parse("ml,vision").key == "ml,vision"
    assert Scope.parse("ml,kube-system").key == "ml"  # what it serves, not what it lists
