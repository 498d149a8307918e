"""One watch-backed cache implementation: list once, then watch, resuming where it was.

An `Informer` keeps every object of one resource (optionally one namespace, one label
or field selector) parsed by the caller's function and keyed by the caller's key. It
lists once, then watches from the list's resourceVersion; when a watch ends (the
server closes it every few minutes) it resumes from the last version it saw, which
bookmarks keep fresh even when nothing changes; only a 410 Gone (the version was
compacted away) makes it list again.

Readers wait on it without polling:
- `wait_version(rv)`: until the cache has seen resourceVersion rv (a client reading
  its own write: the API waits for the version its write returned);
- `wait_until(key, predicate)`: until the object under key satisfies predicate (or is
  gone), e.g. until a cancelled job reaches its final phase;
- `notifying(signal)`: while the block runs, every change sets the subscriber's own
  asyncio.Event (one per subscriber, so one slow reader never misses or steals
  another's wake-up), e.g. a server-sent event stream re-rendering on change.

A writer may also hand it the object its write returned (`offer`, given a
`revision_of`): applied at once when newer than what the cache holds, so a client
reads its own write without waiting for the watch to deliver it. The watch then
brings the same version (no change) and never puts back an older one over it.

resourceVersions are compared as integers, which is what etcd-backed API servers
produce; the contract calls them opaque, so a server with other versions gets
`comparable = False` and callers fall back to live reads.

Everything runs on the event loop: no threads, no locks. A watch opened with
credentials that have since been rotated or revoked goes on (the server checked them
when it opened); its successor is opened with the current ones (shunter.kube.client
reloads them after a 401).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Hashable, Iterator
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from shunter.domain.model import revision
from shunter.kube import tasks
from shunter.kube.client import Body, Kube
from shunter.kube.errors import Forbidden, Gone, KubeError, NotFound
from shunter.kube.resources import Resource

log = logging.getLogger("shunter.kube.informer")

K = TypeVar("K", bound=Hashable)
T = TypeVar("T")

WATCH_SECONDS = 300
RETRY_SECONDS = 1.0
LIST_PAGE = 500
# A list applies this many objects between two turns of the event loop.
YIELD_EVERY = 500
ABSENT_RETRY_SECONDS = 30.0


@dataclass
class _Waiter(Generic[T]):
    predicate: Callable[[T | None], bool]
    future: asyncio.Future[None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class Informer(Generic[K, T]):
    def __init__(
        self,
        kube: Kube,
        resource: Resource,
        *,
        parse: Callable[[Body], T],
        key: Callable[[T], K],
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        on_change: Callable[[str, T], None] | None = None,
        optional: bool = False,
        watch_seconds: int = WATCH_SECONDS,
        revision_of: Callable[[T], int | None] | None = None,
    ) -> None:
        self.kube = kube
        self.resource = resource
        self.namespace = namespace
        self._parse = parse
        self._key = key
        self._label_selector = label_selector
        self._field_selector = field_selector
        self._on_change = on_change
        # A resource that may not be installed (a CRD) or readable: absent counts as empty.
        self._optional = optional
        # How long one watch lasts before the server ends it and it is resumed.
        self._watch_seconds = watch_seconds
        # An object's resourceVersion as a number: what lets a writer offer its write.
        self._revision_of = revision_of
        self.store: dict[K, T] = {}
        # Bumped on every real change, so readers can cache what they derive.
        self.version = 0
        self.resource_version: str | None = None
        self.comparable = True
        self.synced = asyncio.Event()
        self._seen = 0  # the highest resourceVersion applied, as a number
        # While a list is read: the keys offered meanwhile (checked again at its end).
        self._offered_while_listing: set[K] | None = None
        self._version_waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._key_waiters: dict[K, list[_Waiter[T]]] = {}
        self._subscribers: set[asyncio.Event] = set()
        self._task: asyncio.Task[None] | None = None

    # -- life --------------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.create_task(self.run(), name=f"informer-{self.resource.plural}")

    async def stop(self) -> None:
        if self._task is not None:
            await tasks.stop(self._task)

    async def run(self) -> None:
        while True:
            try:
                if self.resource_version is None:
                    await self._relist()
                await self._watch()
            except Gone:
                self.resource_version = None  # compacted away: list again
            except (NotFound, Forbidden) as exc:
                self.resource_version = None
                if not self._optional:
                    log.warning("%s informer: %s; resuming", self.resource.plural, exc)
                    await asyncio.sleep(RETRY_SECONDS)
                    continue
                if not self.synced.is_set():
                    log.warning("%s: %s (CRD not installed, or no permission): none, for now",
                                self.resource.plural, exc)  # fmt: skip
                self.synced.set()
                await asyncio.sleep(ABSENT_RETRY_SECONDS)
            except KubeError as exc:
                log.warning("%s informer: %s; resuming", self.resource.plural, exc)
                await asyncio.sleep(RETRY_SECONDS)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("%s informer failed; resuming", self.resource.plural)
                await asyncio.sleep(RETRY_SECONDS)

    # -- reading -----------------------------------------------------------------

    def get(self, key: K) -> T | None:
        return self.store.get(key)

    def __len__(self) -> int:
        return len(self.store)

    @contextlib.contextmanager
    def notifying(self, signal: asyncio.Event) -> Iterator[asyncio.Event]:
        """Set signal on every change (the version moves) while the block runs; the
        subscriber clears it before it reads the cache, so no change goes unseen."""
        self._subscribers.add(signal)
        try:
            yield signal
        finally:
            self._subscribers.discard(signal)

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)

    async def wait_version(self, resource_version: str, *, within: float) -> bool:
        """True once the cache has applied resource_version (or a later one)."""
        wanted = revision(resource_version)
        if wanted is None:
            self.comparable = False
            return False
        if self._seen >= wanted:
            return True
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (wanted, future)
        self._version_waiters.append(entry)
        try:
            async with asyncio.timeout(within):
                await future
            return True
        except TimeoutError:
            return False
        finally:
            with contextlib.suppress(ValueError):
                self._version_waiters.remove(entry)

    async def wait_until(
        self, key: K, predicate: Callable[[T | None], bool], *, within: float
    ) -> bool:
        """True once the object under key satisfies predicate (None: it is gone)."""
        if predicate(self.store.get(key)):
            return True
        waiter: _Waiter[T] = _Waiter(predicate)
        self._key_waiters.setdefault(key, []).append(waiter)
        try:
            async with asyncio.timeout(within):
                await waiter.future
            return True
        except TimeoutError:
            return False
        finally:
            waiters = self._key_waiters.get(key, [])
            with contextlib.suppress(ValueError):
                waiters.remove(waiter)
            if not waiters:
                self._key_waiters.pop(key, None)

    def offer(self, obj: T) -> bool:
        """A write's answer: applied now if newer than the cached object (and than every
        version the watch delivered: a later delete is not undone). True when the
        cache shows this version or a later one; False when it cannot tell (no
        revision_of, an opaque resourceVersion), and the writer waits for the watch."""
        if self._revision_of is None or not self.comparable:
            return False
        wanted = self._revision_of(obj)
        if wanted is None:
            return False
        if self._seen >= wanted:
            return True
        current = self.store.get(self._key(obj))
        if current is not None and (self._revision_of(current) or 0) >= wanted:
            return True
        self._apply("ADDED" if current is None else "MODIFIED", obj)
        if self._offered_while_listing is not None:
            self._offered_while_listing.add(self._key(obj))
        return True

    # -- feeding -----------------------------------------------------------------

    async def _relist(self) -> None:
        """List every page, parsing each as it comes: the raw objects of one page are
        held at a time, not the whole list's (60,000 raw TrainingJobs are several
        times the size of what the cache keeps of them)."""
        fresh: dict[K, T] = {}
        token: str | None = None
        offered: set[K] = set()
        self._offered_while_listing = offered
        try:
            while True:
                page = await self.kube.list(
                    self.resource, namespace=self.namespace, limit=LIST_PAGE,
                    continue_token=token, label_selector=self._label_selector,
                    field_selector=self._field_selector,
                )  # fmt: skip
                for i, body in enumerate(page.get("items") or ()):
                    if i and not i % YIELD_EVERY:
                        # A long list must not hold the loop (the Lease's renew).
                        await asyncio.sleep(0)
                    obj = self._parse(body)
                    key = self._key(obj)
                    # A writer's offer newer than the list stays (the watch brings it again).
                    kept = self.store.get(key)
                    fresh[key] = (
                        kept if kept is not None and self._offered_ahead(kept, obj) else obj
                    )
                metadata = page.get("metadata") or {}
                token = metadata.get("continue")
                if not token:
                    break
                page = {}  # its raw objects go before the next page comes
        finally:
            self._offered_while_listing = None
        for key in offered:  # after its page was read
            kept, listed = self.store.get(key), fresh.get(key)
            if kept is not None and listed is not None and self._offered_ahead(kept, listed):
                fresh[key] = kept
        resource_version = str(metadata["resourceVersion"])
        gone = [k for k in self.store if k not in fresh]
        old, self.store = self.store, fresh
        self._changed()
        if self._on_change is not None:
            for i, (key, obj) in enumerate(list(fresh.items())):
                if i and not i % YIELD_EVERY:
                    await asyncio.sleep(0)
                if old.get(key) != obj:
                    self._on_change("ADDED" if key not in old else "MODIFIED", obj)
            for key in gone:
                self._on_change("DELETED", old[key])
        for key in list(self._key_waiters):
            self._notify_key(key)
        self._advance(resource_version)
        self.synced.set()

    async def _watch(self) -> None:
        assert self.resource_version is not None
        events = self.kube.watch(
            self.resource, namespace=self.namespace, resource_version=self.resource_version,
            timeout_seconds=self._watch_seconds, label_selector=self._label_selector,
            field_selector=self._field_selector,
        )  # fmt: skip
        async with contextlib.aclosing(events) as stream:
            await self._follow(stream)

    async def _follow(self, stream: AsyncIterator[tuple[str, Body]]) -> None:
        async for kind, body in stream:
            resource_version = str((body.get("metadata") or {}).get("resourceVersion", ""))
            if kind != "BOOKMARK":
                self._apply(kind, self._parse(body))
            if resource_version:
                self._advance(resource_version)

    def _apply(self, kind: str, obj: T) -> None:
        key = self._key(obj)
        if kind == "DELETED":
            if self.store.pop(key, None) is None:
                return
        else:
            current = self.store.get(key)
            if current == obj:
                return
            if self._offered_ahead(current, obj):
                return
            self.store[key] = obj
        self._changed()
        if self._on_change is not None:
            self._on_change(kind, obj)
        self._notify_key(key)

    def _offered_ahead(self, current: T | None, obj: T) -> bool:
        """Whether the cached object is a writer's offer newer than obj (the watch is
        behind it: obj is an older version, applied already or never to be shown)."""
        if self._revision_of is None or current is None:
            return False
        ahead, behind = self._revision_of(current), self._revision_of(obj)
        return ahead is not None and behind is not None and ahead > behind

    def _changed(self) -> None:
        self.version += 1
        for signal in self._subscribers:
            signal.set()

    def _notify_key(self, key: K) -> None:
        waiters = self._key_waiters.get(key)
        if not waiters:
            return
        current = self.store.get(key)
        for waiter in waiters:
            if not waiter.future.done() and waiter.predicate(current):
                waiter.future.set_result(None)

    def _advance(self, resource_version: str) -> None:
        self.resource_version = resource_version
        number = revision(resource_version)
        if number is None:
            self.comparable = False
            return
        self._seen = max(self._seen, number)
        if self._version_waiters:
            for wanted, future in self._version_waiters:
                if wanted <= self._seen and not future.done():
                    future.set_result(None)
