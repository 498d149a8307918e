"""The API's job cache: what a late write does after the watch reported a delete."""

from __future__ import annotations

from shunter.api.cluster import JobCache
from shunter.operator.model import Job, Phase
from tests.support.builders import a_training_job


def test_a_write_landing_after_the_delete_event_does_not_bring_the_job_back():
    cache = JobCache(None, namespace="default")  # type: ignore[arg-type]  # no watch started
    body = a_training_job("gone").in_phase("running").body()
    job = cache.put(body)
    cache._store(Job.parse(body), deleted=True)  # what the watch does on DELETED

    cache.put(body)  # the API's own write, answered just before the delete

    assert cache.get(job.key) is None
    assert cache.count() == 0


def test_an_older_version_never_replaces_a_newer_one():
    cache = JobCache(None, namespace="default")  # type: ignore[arg-type]
    newer = a_training_job("j").in_phase("running").body()
    older = a_training_job("j").in_phase("queued").body()
    older["metadata"]["uid"] = newer["metadata"]["uid"]
    older["metadata"]["resourceVersion"] = str(int(newer["metadata"]["resourceVersion"]) - 1)

    job = cache.put(newer)
    cache.put(older)

    stored = cache.get(job.key)
    assert stored is not None
    assert stored.phase is Phase.RUNNING


def test_putting_what_the_cache_already_holds_keeps_its_version():
    cache = JobCache(None, namespace="default")  # type: ignore[arg-type]
    body = a_training_job("j").in_phase("running").body()
    cache.put(body)
    version = cache.version

    cache.put(body)  # GET /status re-reads an unchanged job

    assert cache.version == version
