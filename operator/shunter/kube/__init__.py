"""Shunter's one Kubernetes layer, shared by the operator and the API.

- `connection`: where the API server is and how to reach it (in-cluster or kubeconfig;
  `proxies`: which proxy); `credentials`: who we are, kept current;
- `client.Kube`: an asyncio client (plain dicts in and out, timeouts on every call),
  retrying where safe (`retries`), optionally rate-limited (`ratelimit`);
- `errors`: the one exception tree (the API maps it to HTTP in one place);
- `informer.Informer`: the one watch-backed cache (list, watch, resume, bookmarks);
- `resources`: the resources Shunter uses; `events`: posting and reading Events.

Everything runs on the caller's event loop, but for what would block it: reading
credential files, running exec plugins and building TLS contexts go to a worker
thread (asyncio.to_thread).
"""

from shunter.kube.client import Body, Kube
from shunter.kube.connection import Connection, connect
from shunter.kube.errors import (
    Conflict,
    Forbidden,
    Gone,
    Invalid,
    KubeError,
    NotFound,
    TooManyRequests,
    Unauthorized,
    Unreachable,
)
from shunter.kube.informer import Informer
from shunter.kube.resources import Resource

__all__ = [
    "Body",
    "Conflict",
    "Connection",
    "Forbidden",
    "Gone",
    "Informer",
    "Invalid",
    "Kube",
    "KubeError",
    "NotFound",
    "Resource",
    "TooManyRequests",
    "Unauthorized",
    "Unreachable",
    "connect",
]
