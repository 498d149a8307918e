"""Kubernetes Events about a TrainingJob: the body the operator posts
(shunter.operator.actions), and how the API reads them."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from shunter.kube.client import Body
from shunter.kube.resources import TRAINING_JOBS

COMPONENT = "shunter-operator"


def format_micro_time(value: datetime) -> str:
    """Kubernetes MicroTime (Event and Lease times): RFC 3339, six fractional digits."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def event_body(
    *, namespace: str, name: str, uid: str, type: str, reason: str, message: str, at: datetime
) -> Body:
    """An Event about the job, stamped with the time it was decided (not posted)."""
    stamp = format_micro_time(at)
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": f"{name}.", "namespace": namespace},
        "involvedObject": {
            "apiVersion": TRAINING_JOBS.api_version,
            "kind": "TrainingJob",
            "name": name,
            "namespace": namespace,
            "uid": uid,
        },
        "type": type,
        "reason": reason,
        "message": message[:1024],
        "source": {"component": COMPONENT},
        "reportingComponent": COMPONENT,
        "reportingInstance": COMPONENT,
        "action": reason,
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "eventTime": stamp,
        "count": 1,
    }


JOB_EVENTS_SELECTOR = "involvedObject.kind=TrainingJob"


def event_time(body: Body) -> str | None:
    """When it happened: eventTime, else the last or first timestamp."""
    value: Any = body.get("eventTime") or body.get("lastTimestamp") or body.get("firstTimestamp")
    return str(value) if value else None
