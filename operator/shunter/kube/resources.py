"""The Kubernetes resources Shunter reads and writes, and their URL paths."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote


@dataclass(frozen=True)
class Resource:
    group: str  # "" for the core group
    version: str
    plural: str
    namespaced: bool = True

    def path(
        self, *, namespace: str | None = None, name: str | None = None, sub: str | None = None
    ) -> str:
        """/api/v1/namespaces/NS/pods/NAME/log and the like; namespace None lists all."""
        base = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        parts = [base]
        if self.namespaced and namespace is not None:
            parts.append(f"namespaces/{quote(namespace, safe='')}")
        parts.append(self.plural)
        if name is not None:
            parts.append(quote(name, safe=""))
            if sub is not None:
                parts.append(sub)
        return "/".join(parts)

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version


TRAINING_JOBS = Resource("shunter.dev", "v1alpha1", "trainingjobs")
TRAINING_QUEUES = Resource("shunter.dev", "v1alpha1", "trainingqueues", namespaced=False)
PODS = Resource("", "v1", "pods")
NODES = Resource("", "v1", "nodes", namespaced=False)
SERVICES = Resource("", "v1", "services")
PVCS = Resource("", "v1", "persistentvolumeclaims")
EVENTS = Resource("", "v1", "events")
LEASES = Resource("coordination.k8s.io", "v1", "leases")
TOKEN_REVIEWS = Resource("authentication.k8s.io", "v1", "tokenreviews", namespaced=False)
ACCESS_REVIEWS = Resource("authorization.k8s.io", "v1", "subjectaccessreviews", namespaced=False)
