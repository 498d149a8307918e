"""The API's one door to Kubernetes: TrainingJob reads and writes, and a watch cache.

Decisions read the live CR (a GET), and the cancel patch carries the read
resourceVersion, so a job finishing at that very moment yields one consistent answer.
`/queue` reads a watch-backed cache instead of listing on every request; the API
also feeds its own writes into the cache at once, so a client reads its own writes.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError

from shunter.operator.model import GROUP, PLURAL, VERSION, Job, JobKey

log = logging.getLogger("shunter.api.cluster")


class ClusterError(Exception):
    """The API server refused or could not be reached."""

    def __init__(self, message: str, *, status: int | None = None, body: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.body = body


class NotFound(ClusterError):
    pass


class Conflict(ClusterError):
    pass


class Rejected(ClusterError):
    """422: the API server's schema or CEL rules rejected the object."""


def translate(exc: ApiException, what: str) -> ClusterError:
    kinds: dict[int, type[ClusterError]] = {404: NotFound, 409: Conflict, 422: Rejected}
    cls = kinds.get(exc.status or 0, ClusterError)
    return cls(f"{what}: {exc.status} {exc.reason}", status=exc.status, body=str(exc.body or ""))


class Cluster:
    def __init__(self, api: client.ApiClient) -> None:
        self.api = api
        self.custom = client.CustomObjectsApi(api)
        self.auth = client.AuthenticationV1Api(api)
        self.core = client.CoreV1Api(api)
        self.authz = client.AuthorizationV1Api(api)

    def _do(self, what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("_request_timeout", 30)
        try:
            return fn(*args, **kwargs)
        except ApiException as exc:
            raise translate(exc, what) from exc
        except (HTTPError, OSError) as exc:
            raise ClusterError(f"{what}: API server unreachable: {exc}") from exc

    def get_job(self, key: JobKey) -> dict[str, Any]:
        body: dict[str, Any] = self._do(
            f"get {key}",
            self.custom.get_namespaced_custom_object,
            GROUP, VERSION, key.namespace, PLURAL, key.name,
        )  # fmt: skip
        return body

    def create_job(self, namespace: str, manifest: dict[str, Any]) -> dict[str, Any]:
        body: dict[str, Any] = self._do(
            f"create job in {namespace}",
            self.custom.create_namespaced_custom_object,
            GROUP, VERSION, namespace, PLURAL, manifest,
        )  # fmt: skip
        return body

    def request_cancel(self, key: JobKey, *, resource_version: str) -> dict[str, Any]:
        """Set spec.cancelled=true, only if the job is still at resource_version."""
        patch = {"metadata": {"resourceVersion": resource_version}, "spec": {"cancelled": True}}
        body: dict[str, Any] = self._do(
            f"cancel {key}",
            self.custom.patch_namespaced_custom_object,
            GROUP, VERSION, key.namespace, PLURAL, key.name, patch,
            _content_type="application/merge-patch+json",
        )  # fmt: skip
        return body

    def job_events(self, key: JobKey) -> list[dict[str, Any]]:
        """Kubernetes Events about the job, oldest first."""
        events = self._do(
            f"events of {key}",
            self.core.list_namespaced_event,
            key.namespace,
            field_selector=f"involvedObject.kind=TrainingJob,involvedObject.name={key.name}",
        )
        rows = [
            {
                "type": e.type,
                "reason": e.reason,
                "message": e.message,
                "time": e.event_time or e.last_timestamp or e.first_timestamp,
                "count": e.count or 1,
            }
            for e in events.items
        ]
        return sorted(rows, key=lambda r: (r["time"] is None, r["time"]))

    def review_token(self, token: str) -> dict[str, Any]:
        body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
                "spec": {"token": token}}  # fmt: skip
        result = self._do("token review", self.auth.create_token_review, body)
        return dict(self.api.sanitize_for_serialization(result))  # type: ignore[no-untyped-call]

    def may(self, *, user: str, groups: list[str], uid: str, verb: str, namespace: str) -> bool:
        body = {
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SubjectAccessReview",
            "spec": {
                "user": user,
                "groups": groups,
                "uid": uid,
                "resourceAttributes": {
                    "group": GROUP, "resource": PLURAL, "verb": verb, "namespace": namespace,
                },
            },
        }  # fmt: skip
        result = self._do("access review", self.authz.create_subject_access_review, body)
        return bool(result.status.allowed)


class JobCache:
    """Every TrainingJob in scope, kept current by a watch running in a thread.

    One LIST, then a watch resumed from the last resourceVersion it saw (bookmarks
    included); a new LIST only when the server says that version is too old (410).
    """

    WATCH_SECONDS = 300
    TOMBSTONE_SECONDS = 120.0

    def __init__(self, cluster: Cluster, *, namespace: str | None) -> None:
        self.cluster = cluster
        self.namespace = namespace
        self._jobs: dict[JobKey, Job] = {}
        # uid -> when its DELETED event came: a late `put` of that job (a write the API
        # made just before the delete) must not bring it back.
        self._deleted: dict[str, float] = {}
        # Bumped on every change, so readers can cache what they derive from the jobs.
        self.version = 0
        self._lock = threading.Lock()
        self._synced = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="job-cache", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    @property
    def synced(self) -> bool:
        return self._synced.is_set()

    def wait_synced(self, timeout: float) -> bool:
        return self._synced.wait(timeout)

    def jobs(self, namespace: str | None = None) -> list[Job]:
        with self._lock:
            return [j for j in self._jobs.values() if namespace in (None, j.key.namespace)]

    def get(self, key: JobKey) -> Job | None:
        with self._lock:
            return self._jobs.get(key)

    def count(self) -> int:
        with self._lock:
            return len(self._jobs)

    def put(self, body: dict[str, Any]) -> Job:
        """Record an object the API itself just wrote (read-your-writes)."""
        job = Job.parse(body)
        self._store(job)
        return job

    def _store(self, job: Job, *, deleted: bool = False) -> None:
        """Keep job unless what the cache holds is newer. The version moves only on a
        real change: GET /status puts what it read, and must not invalidate what
        readers derived (the /queue order) when nothing changed."""
        with self._lock:
            if deleted:
                self._deleted[job.uid] = now = time.monotonic()
                if len(self._deleted) > 1000:
                    self._deleted = _recent(self._deleted, now - self.TOMBSTONE_SECONDS)
                if self._jobs.pop(job.key, None) is not None:
                    self.version += 1
            elif job.uid not in self._deleted:
                current = self._jobs.get(job.key)
                if current is None or (_newer(job, current) and job != current):
                    self._jobs[job.key] = job
                    self.version += 1

    def _list_call(self) -> tuple[Callable[..., Any], tuple[Any, ...]]:
        if self.namespace:
            return self.cluster.custom.list_namespaced_custom_object, (
                GROUP, VERSION, self.namespace, PLURAL,
            )  # fmt: skip
        return self.cluster.custom.list_cluster_custom_object, (GROUP, VERSION, PLURAL)

    def _run(self) -> None:
        fn, args = self._list_call()
        version: str | None = None
        while not self._stop.is_set():
            try:
                if version is None:
                    version = self._relist(fn, args)
                version = self._watch(fn, args, version)
            except ApiException as exc:
                version = None  # 410 Gone (too old) or another error: list again
                if exc.status != 410:
                    log.warning("job cache: %s %s; relisting", exc.status, exc.reason)
                    time.sleep(1)
            except Exception:
                log.exception("job cache: watch failed; resuming")
                time.sleep(1)

    def _relist(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> str:
        listing = fn(*args, _request_timeout=60)
        jobs = {j.key: j for j in map(Job.parse, listing["items"])}  # parsed outside the lock
        with self._lock:
            self._jobs = jobs
            self._deleted = _recent(self._deleted, time.monotonic() - self.TOMBSTONE_SECONDS)
            self.version += 1
        self._synced.set()
        return str(listing["metadata"]["resourceVersion"])

    def _watch(self, fn: Callable[..., Any], args: tuple[Any, ...], version: str) -> str:
        """Apply events from version on; return the version to resume from."""
        stream = watch.Watch()  # type: ignore[no-untyped-call]
        for event in stream.stream(  # type: ignore[no-untyped-call]
            fn, *args, resource_version=version, timeout_seconds=self.WATCH_SECONDS,
            allow_watch_bookmarks=True, _request_timeout=self.WATCH_SECONDS + 30,
        ):  # fmt: skip
            if self._stop.is_set():
                stream.stop()  # type: ignore[no-untyped-call]
                break
            kind, body = event["type"], event["object"]
            if kind == "ERROR":
                raise ApiException(status=body.get("code"), reason=body.get("message"))
            version = str(body["metadata"]["resourceVersion"])
            if kind != "BOOKMARK":
                self._store(Job.parse(body), deleted=kind == "DELETED")
        return version


def _recent(tombstones: dict[str, float], cutoff: float) -> dict[str, float]:
    return {uid: t for uid, t in tombstones.items() if t > cutoff}


def _newer(candidate: Job, current: Job) -> bool:
    if candidate.uid != current.uid:
        return True
    try:
        return int(candidate.resource_version) >= int(current.resource_version)
    except ValueError:
        return True
