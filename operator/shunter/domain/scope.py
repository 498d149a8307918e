"""Which namespaces Shunter serves (pure): the operator acts on their jobs, the API
accepts submissions to them.

Two settings, read by the operator and the API alike (the chart sets both the same):

- `SHUNTER_NAMESPACE`: the namespaces to watch, comma-separated; empty means the whole
  cluster. One entry behaves exactly as the single namespace always did. With a list,
  the operator runs one informer per namespace for each namespaced resource (the
  chart grants a Role in each, not a ClusterRole, so a cluster-wide watch would be
  refused).
- `SHUNTER_EXCLUDE_NAMESPACES`: namespaces never served, comma-separated; default
  `kube-system`. The chart adds its own release namespace: a TrainingJob there would
  run next to the operator with access to its Secrets' namespace. Exclusion wins over
  the watch list (the chart refuses to render a list naming an excluded namespace, so
  the two never meet in an install).

A job in a namespace not served is left alone: no status, no Pod, no Event (writing
anything there is what exclusion rules out); the API refuses to submit it (403) with
the reason, which `refusal` words once for both.
"""

from __future__ import annotations

from dataclasses import dataclass

WATCH_SETTING = "SHUNTER_NAMESPACE"
EXCLUDE_SETTING = "SHUNTER_EXCLUDE_NAMESPACES"
DEFAULT_EXCLUDED = "kube-system"


def _names(raw: str | None) -> tuple[str, ...]:
    """Comma-separated names, blanks dropped, first occurrence kept."""
    return tuple(dict.fromkeys(n.strip() for n in (raw or "").split(",") if n.strip()))


@dataclass(frozen=True)
class Scope:
    watched: tuple[str, ...] = ()  # empty: every namespace
    excluded: frozenset[str] = frozenset({DEFAULT_EXCLUDED})

    @classmethod
    def parse(cls, watch: str | None, exclude: str | None = None) -> Scope:
        """From the two settings' raw values (exclude None: the default, kube-system)."""
        excluded = _names(DEFAULT_EXCLUDED if exclude is None else exclude)
        return cls(watched=_names(watch), excluded=frozenset(excluded))

    @property
    def cluster_wide(self) -> bool:
        return not self.watched

    @property
    def namespaces(self) -> tuple[str, ...]:
        """The watched namespaces that are not excluded (empty when cluster-wide)."""
        return tuple(n for n in self.watched if n not in self.excluded)

    @property
    def key(self) -> str:
        """This install's name in state it shares with other installs through one
        database (the plan it publishes): "*" when cluster-wide, else the served
        namespaces, sorted and comma-separated."""
        return "*" if self.cluster_wide else ",".join(sorted(self.namespaces))

    def watch_targets(self) -> tuple[str | None, ...]:
        """What to start an informer on for each namespaced resource: None (the whole
        cluster) or each served namespace."""
        return (None,) if self.cluster_wide else self.namespaces

    def serves(self, namespace: str) -> bool:
        return self.refusal(namespace) is None

    def refusal(self, namespace: str) -> str | None:
        """Why a job in namespace is not served (None: it is)."""
        if namespace in self.excluded:
            return (
                f"namespace {namespace!r} is excluded from Shunter (kube-system and"
                " Shunter's own namespace are, unless the installer says otherwise):"
                " its jobs would never run; submit to another namespace"
            )
        if not self.cluster_wide and namespace not in self.watched:
            served = ", ".join(self.namespaces)
            return f"namespace {namespace!r} is not served by this Shunter (it serves {served})"
        return None

    def describe(self) -> str:
        """For the start-up log line."""
        where = "all namespaces" if self.cluster_wide else "namespaces " + ",".join(self.watched)
        if self.excluded:
            where += f" except {','.join(sorted(self.excluded))}"
        return where
