"""Record every change of one resource in a namespace, in the API server's order.

A test runs a `Recorder` beside the system under test (a thread with its own watch,
resumed from the last resourceVersion seen, bookmarks included), then checks
invariants over the whole history, not only the end state: e.g. never more trainer
Pods at once than the running limit, never a Pod created twice. A 410 (the history
was compacted away) is recorded as a gap, and a test that needs the full history
asserts there was none.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException

from tests.support.background import Background


@dataclass(frozen=True)
class Change:
    at: float  # time.time() when the recorder saw it
    kind: str  # ADDED | MODIFIED | DELETED
    object: dict[str, Any]

    @property
    def name(self) -> str:
        return str(self.object["metadata"]["name"])


class Recorder:
    def __init__(self, list_call: Callable[..., Any], namespace: str, *, kind: str) -> None:
        self._list = list_call
        self.kind = kind  # set on every object (a list's items carry no kind)
        self.namespace = namespace
        self.changes: list[Change] = []
        self.gaps = 0
        self.errors: list[str] = []
        self._started = threading.Event()
        self._lock = threading.Lock()
        self._thread = Background(self._run, name=f"{kind} recorder")

    @classmethod
    def pods(cls, api: client.ApiClient, namespace: str) -> Recorder:
        return cls(client.CoreV1Api(api).list_namespaced_pod, namespace, kind="Pod")

    @classmethod
    def training_jobs(cls, api: client.ApiClient, namespace: str) -> Recorder:
        custom = client.CustomObjectsApi(api)

        def list_jobs(namespace: str, **kwargs: Any) -> Any:
            return custom.list_namespaced_custom_object(
                "shunter.dev", "v1alpha1", namespace, "trainingjobs", **kwargs
            )

        return cls(list_jobs, namespace, kind="TrainingJob")

    def start(self) -> Recorder:
        self._thread.start()
        assert self._started.wait(timeout=30), "the recorder's first list did not answer"
        return self

    def stop(self) -> list[Change]:
        self._thread.stop(timeout=90)
        return self.snapshot()

    def snapshot(self) -> list[Change]:
        with self._lock:
            return list(self.changes)

    def _relist(self) -> str:
        listing = self._list(self.namespace, _preload_content=False)
        body = json.loads(listing.data)
        with self._lock:
            for item in body.get("items") or ():
                item["kind"] = self.kind
                self.changes.append(Change(time.time(), "ADDED", item))
        self._started.set()
        return str(body["metadata"]["resourceVersion"])

    def _run(self, stop: threading.Event) -> None:
        version = self._relist()
        while not stop.is_set():
            stream = watch.Watch()
            try:
                for event in stream.stream(
                    self._list, self.namespace, resource_version=version,
                    allow_watch_bookmarks=True, timeout_seconds=10,
                ):  # fmt: skip
                    raw = event["raw_object"]
                    raw["kind"] = self.kind
                    version = str(raw["metadata"]["resourceVersion"])
                    if event["type"] in ("ADDED", "MODIFIED", "DELETED"):
                        with self._lock:
                            self.changes.append(Change(time.time(), event["type"], raw))
                    if stop.is_set():
                        break
            except ApiException as exc:
                if exc.status == 410:
                    self.gaps += 1
                    version = self._relist()
                else:
                    self.errors.append(str(exc))
                    stop.wait(1.0)
            except Exception as exc:  # the API server restarting, a closed stream
                self.errors.append(repr(exc))
                stop.wait(1.0)
            finally:
                stream.stop()
