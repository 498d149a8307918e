"""The one module that talks to the Kubernetes API for the operator's writes.

It wraps the official (synchronous) client: calls run in a dedicated thread pool so
the asyncio loop (kopf's watches) is never blocked, and API errors become the small
exception tree below. Reads come from kopf's indexes, never from here, except the
Lease of leader election.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError

from shunter.operator.decisions import Event
from shunter.operator.model import (
    API_VERSION,
    GROUP,
    KIND,
    PLURAL,
    VERSION,
    JobKey,
    Uid,
    format_micro_time,
)

log = logging.getLogger("shunter.operator.kube")
COMPONENT = "shunter-operator"
# Seconds before a call to the API server is abandoned (and retried by the next pass).
REQUEST_TIMEOUT = 30


class KubeError(Exception):
    """An API call failed."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class NotFound(KubeError):
    pass


class Conflict(KubeError):
    pass


class Invalid(KubeError):
    """422: the API server rejected the object itself; retrying cannot help."""


def _translate(exc: ApiException, what: str) -> KubeError:
    detail = f"{what}: {exc.status} {exc.reason}"
    if exc.body:
        detail += f": {str(exc.body)[:500]}"
    kinds: dict[int, type[KubeError]] = {404: NotFound, 409: Conflict, 422: Invalid}
    return kinds.get(exc.status or 0, KubeError)(detail, status=exc.status)


def load_api_client(*, pool_size: int = 32) -> client.ApiClient:
    """In-cluster config when running in a Pod, else $KUBECONFIG / ~/.kube/config."""
    try:
        config.load_incluster_config()  # type: ignore[no-untyped-call]
    except config.ConfigException:
        config.load_kube_config()  # type: ignore[no-untyped-call]
    configuration = client.Configuration.get_default_copy()
    configuration.connection_pool_maxsize = pool_size
    return client.ApiClient(configuration)


class Kube:
    def __init__(self, api: client.ApiClient, *, workers: int = 32) -> None:
        self.api = api
        self.core = client.CoreV1Api(api)
        self.custom = client.CustomObjectsApi(api)
        self.coordination = client.CoordinationV1Api(api)
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="kube")

    async def _call(self, what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        loop = asyncio.get_running_loop()
        kwargs.setdefault("_request_timeout", REQUEST_TIMEOUT)
        try:
            return await loop.run_in_executor(self._pool, functools.partial(fn, *args, **kwargs))
        except ApiException as exc:
            raise _translate(exc, what) from exc
        except (HTTPError, OSError) as exc:
            # The API server is unreachable (restarting, network): a retryable failure.
            raise KubeError(f"{what}: {exc}") from exc

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self.api.close()  # type: ignore[no-untyped-call]

    async def patch_job_status(self, key: JobKey, patch: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = await self._call(
            f"patch status of {key}",
            self.custom.patch_namespaced_custom_object_status,
            GROUP,
            VERSION,
            key.namespace,
            PLURAL,
            key.name,
            {"status": patch},
            _content_type="application/merge-patch+json",
        )
        return result

    async def create_pod(self, manifest: dict[str, Any]) -> bool:
        """Create the Pod; False when it already exists (a retried create)."""
        meta = manifest["metadata"]
        try:
            await self._call(
                f"create pod {meta['namespace']}/{meta['name']}",
                self.core.create_namespaced_pod,
                meta["namespace"],
                manifest,
            )
        except Conflict:
            return False
        return True

    async def delete_pod(self, namespace: str, name: str, *, grace_seconds: int) -> bool:
        """Delete the Pod with a grace period; False when it is already gone."""
        try:
            await self._call(
                f"delete pod {namespace}/{name}",
                self.core.delete_namespaced_pod,
                name,
                namespace,
                grace_period_seconds=grace_seconds,
                propagation_policy="Background",
            )
        except NotFound:
            return False
        return True

    async def post_event(self, key: JobKey, uid: Uid, event: Event, *, at: datetime) -> None:
        """Post an Event about the job, stamped with the time it was decided."""
        stamp = format_micro_time(at)
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{key.name}.", "namespace": key.namespace},
            "involvedObject": {
                "apiVersion": API_VERSION,
                "kind": KIND,
                "name": key.name,
                "namespace": key.namespace,
                "uid": uid,
            },
            "type": event.type,
            "reason": event.reason,
            "message": event.message[:1024],
            "source": {"component": COMPONENT},
            "reportingComponent": COMPONENT,
            "reportingInstance": COMPONENT,
            "action": event.reason,
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "eventTime": stamp,
            "count": 1,
        }
        await self._call(
            f"post event on {key}", self.core.create_namespaced_event, key.namespace, body
        )

    async def read_lease(self, namespace: str, name: str) -> dict[str, Any]:
        response = await self._call(
            f"read lease {namespace}/{name}",
            self.coordination.read_namespaced_lease,
            name,
            namespace,
            _preload_content=False,
        )
        body: dict[str, Any] = json.loads(response.data)
        return body

    async def create_lease(self, namespace: str, body: dict[str, Any]) -> None:
        await self._call(
            f"create lease in {namespace}",
            self.coordination.create_namespaced_lease,
            namespace,
            body,
        )

    async def replace_lease(self, namespace: str, name: str, body: dict[str, Any]) -> None:
        await self._call(
            f"replace lease {namespace}/{name}",
            self.coordination.replace_namespaced_lease,
            name,
            namespace,
            body,
        )
