"""A job's logs, from its trainer Pod through the API server (the pods/log subresource).

The API reads them as its own ServiceAccount once the router has checked that the
caller may `get` the job, so users need no Pod permissions. The answers:

| the job | HTTP |
| --- | --- |
| unknown, or without a Pod (queued), or its Pod is gone | 404 |
| its Pod is not scheduled, or its container has not started | 409, the API server's reason |
| its Pod runs on a kwok node (`kwok.x-k8s.io/node: fake`) | 200, one line saying so |
| its Pod runs on a real node | 200, the container's log (`tail` lines; `follow` streams) |
| the node's kubelet does not answer | 502 |

A kwok node runs no process, so there is no log to show: the answer says exactly that
rather than inventing trainer output (and asking would cost a 30 s dial timeout,
since kwok's nodes have no kubelet).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

from shunter.api.errors import BadGateway, NoLogs, NotFound
from shunter.domain.model import JOB_UID_LABEL, Job
from shunter.kube import Body, Kube, KubeError, tasks
from shunter.kube import NotFound as KubeNotFound
from shunter.kube.resources import NODES, PODS

SIMULATED_NODE_ANNOTATION = "kwok.x-k8s.io/node"
# A plain read is bounded in time and size; a follow is bounded by the client.
READ_SECONDS = 30.0
READ_LIMIT_BYTES = 4 * 1024 * 1024
# How long a follow waits for the first bytes before it answers 200 and keeps waiting:
# errors (a container not started yet) come back well within it.
FOLLOW_FIRST_SECONDS = 1.0


@dataclass(frozen=True)
class Logs:
    chunks: AsyncIterator[bytes]
    simulated: bool = False


async def _once(data: bytes) -> AsyncIterator[bytes]:
    yield data


class PodLogs:
    def __init__(self, kube: Kube, *, streams: Kube) -> None:
        self.kube = kube
        # Reads of logs (a follow holds its connection for minutes) go through a
        # connection pool of their own: they never queue the API's reviews and writes.
        self.streams = streams
        self._simulated: dict[str, bool] = {}  # node name -> runs on kwok

    async def open(self, job: Job, *, tail: int, follow: bool) -> Logs:
        name = job.status.pod_name
        if not name:
            phase = job.phase.value if job.phase else "queued"
            raise NotFound(f"Job {job.key.name} has no Pod (it is {phase})")
        pod = await self._pod(job, name)
        node = (pod.get("spec") or {}).get("nodeName")
        if not node:
            raise NoLogs(f"Pod {name} is not scheduled on a node yet: no logs")
        if await self._on_simulated_node(node):
            line = f"Pod {name} runs on a simulated node ({node}, kwok): no process, no logs.\n"
            return Logs(_once(line.encode()), simulated=True)
        params: dict[str, str | int] = {"container": pod["spec"]["containers"][0]["name"],
                                        "tailLines": tail}  # fmt: skip
        path = PODS.path(namespace=job.key.namespace, name=name, sub="log")
        what = f"logs of pod {job.key.namespace}/{name}"
        if follow:
            return Logs(await self._follow(path, {**params, "follow": "true"}, what=what, pod=name))
        params["limitBytes"] = READ_LIMIT_BYTES
        data = b""
        try:
            async for chunk in self.streams.stream(path, what=what, params=params,
                                                   seconds=READ_SECONDS):  # fmt: skip
                data += chunk
        except KubeError as exc:
            raise _refusal(exc, name) from exc
        return Logs(_once(data))

    async def _pod(self, job: Job, name: str) -> Body:
        try:
            pod = await self.kube.get(PODS, name, namespace=job.key.namespace)
        except KubeNotFound as exc:
            raise NotFound(f"Pod {name} of job {job.key.name} no longer exists") from exc
        if (pod["metadata"].get("labels") or {}).get(JOB_UID_LABEL) != job.uid:
            raise NotFound(f"Pod {name} belongs to another job named {job.key.name}")
        return pod

    async def _on_simulated_node(self, node: str) -> bool:
        if node not in self._simulated:
            try:
                body = await self.kube.get(NODES, node)
            except KubeError:
                return False  # unknown: ask for the logs, and report what the server says
            annotations = body["metadata"].get("annotations") or {}
            self._simulated[node] = annotations.get(SIMULATED_NODE_ANNOTATION) == "fake"
        return self._simulated[node]

    async def _follow(
        self, path: str, params: dict[str, str | int], *, what: str, pod: str
    ) -> AsyncIterator[bytes]:
        """The followed log; a refusal raises here, before any byte is answered."""
        queue: asyncio.Queue[bytes | KubeError | None] = asyncio.Queue(maxsize=64)

        async def pump() -> None:
            try:
                async for chunk in self.streams.stream(path, what=what, params=params):
                    await queue.put(chunk)
                await queue.put(None)
            except KubeError as exc:
                await queue.put(exc)

        task = asyncio.create_task(pump(), name=what)
        try:
            async with asyncio.timeout(FOLLOW_FIRST_SECONDS):
                first = await queue.get()
        except TimeoutError:
            first = b""  # a quiet container: answer now, its lines follow
        if isinstance(first, KubeError):
            task.cancel()
            raise _refusal(first, pod)

        async def rest(item: bytes | KubeError | None) -> AsyncIterator[bytes]:
            try:
                while isinstance(item, bytes):
                    if item:
                        yield item
                    item = await queue.get()
            finally:  # the client went away, or the log ended
                await tasks.stop(task)

        return rest(first)


def _refusal(exc: KubeError, pod: str) -> Exception:
    if isinstance(exc, KubeNotFound):
        return NotFound(f"Pod {pod} no longer exists")
    if exc.status == 400:  # e.g. 'container "trainer" ... is waiting to start: ContainerCreating'
        return NoLogs(f"No logs yet: {exc.detail}")
    return BadGateway(f"Cannot read the logs: {exc.detail}")
