"""Run the real operator as a subprocess, and drive TrainingJobs the way kubectl does.

The operator under test is the installed `shunter.operator.main`, started with its
own environment (one namespace, one Lease, the test database), so a test can kill -9
it, restart it and read its log exactly as an administrator would.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from shunter.domain.model import GROUP, PLURAL, VERSION
from tests.support.builders import TrainingJobBuilder
from tests.support.polling import wait_for
from tests.support.process import ServiceProcess

REPO = Path(__file__).resolve().parents[2]
CRD_FILE = REPO / "charts/shunter/crds/trainingjobs.shunter.dev.yaml"
CRD_FILES = sorted((REPO / "charts/shunter/crds").glob("*.yaml"))


def install_crd(api: client.ApiClient) -> None:
    """Create or update Shunter's CRDs (TrainingJob, TrainingQueue); wait until served."""
    for path in CRD_FILES:
        _install(api, yaml.safe_load(path.read_text()))


def _install(api: client.ApiClient, body: dict[str, Any]) -> None:
    ext = client.ApiextensionsV1Api(api)
    name = body["metadata"]["name"]
    try:
        ext.create_custom_resource_definition(body)
    except ApiException as exc:
        if exc.status != 409:
            raise
        current = ext.read_custom_resource_definition(name)
        body["metadata"]["resourceVersion"] = current.metadata.resource_version
        ext.replace_custom_resource_definition(name, body)

    def established() -> bool:
        crd = ext.read_custom_resource_definition(name)
        return any(
            c.type == "Established" and c.status == "True" for c in crd.status.conditions or []
        )

    wait_for(established, timeout=60, what=f"the CRD {name} to be established")


# Short lease timings for tests with several replicas: a takeover takes seconds.
LEASE_SECONDS, RENEW_SECONDS, DEADLINE_SECONDS = 6, 1, 4
LEASE_ENV = {
    "SHUNTER_LEASE_SECONDS": str(LEASE_SECONDS),
    "SHUNTER_RENEW_SECONDS": str(RENEW_SECONDS),
    "SHUNTER_RENEW_DEADLINE_SECONDS": str(DEADLINE_SECONDS),
}


class OperatorProcess(ServiceProcess):
    module = "shunter.operator.main"
    dumps_tasks = True

    def __init__(
        self, *, kubeconfig: Path, namespace: str, database_url: str | None, log_path: Path,
        env: dict[str, str] | None = None,
    ) -> None:  # fmt: skip
        defaults = {
            "SHUNTER_NAMESPACE": namespace,
            "SHUNTER_LEASE_NAMESPACE": namespace,
            # A stable identity: a restarted operator takes its own Lease back at once.
            "SHUNTER_IDENTITY": f"pytest-{namespace}",
            "SHUNTER_GRACE_MARGIN_SECONDS": "2",
            "SHUNTER_RESYNC_SECONDS": "5",
        }
        super().__init__(
            kubeconfig=kubeconfig,
            database_url=database_url,
            log_path=log_path,
            env={**defaults, **(env or {})},
        )

    @property
    def identity(self) -> str:
        return self.env["SHUNTER_IDENTITY"]

    def start(self, *, lead: bool | None = True, wait: bool = True) -> OperatorProcess:
        """Start it and wait until it leads (lead=False: until it stands by, having
        seen another replica hold the Lease; None: either). wait=False: the caller
        waits with wait_started(), having started something else meanwhile."""
        self._offset = len(self.log())
        self._lead = lead
        self.spawn()
        if wait:
            self.wait_started()
        return self

    def wait_started(self) -> OperatorProcess:
        wanted = {True: ("acquired leadership",), False: ("standing by",)}.get(
            self._lead, ("acquired leadership", "standing by")
        )
        wait_for(
            lambda: any(w in self.log_since_start() for w in wanted),
            timeout=60,
            what=f"the operator to log {' or '.join(wanted)!r}",
        )
        return self

    def log_since_start(self) -> str:
        """Its log since the last start()."""
        text = self.log()[getattr(self, "_offset", 0) :]
        marker = text.rfind(f"shunter operator {self.identity}:")
        return text[marker:] if marker >= 0 else ""


class Jobs:
    """TrainingJobs of one namespace, through the same API calls kubectl makes."""

    def __init__(self, api: client.ApiClient, namespace: str) -> None:
        self.namespace = namespace
        self.custom = client.CustomObjectsApi(api)
        self.core = client.CoreV1Api(api)

    def create(self, builder: TrainingJobBuilder) -> dict[str, Any]:
        body = builder.manifest()
        body["metadata"]["namespace"] = self.namespace
        result: dict[str, Any] = self.custom.create_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURAL, body
        )
        return result

    def get(self, name: str) -> dict[str, Any]:
        result: dict[str, Any] = self.custom.get_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURAL, name
        )
        return result

    def patch_spec(self, name: str, spec: dict[str, Any]) -> dict[str, Any]:
        """`kubectl patch tj NAME --type merge -p '{"spec": ...}'`."""
        result: dict[str, Any] = self.custom.patch_namespaced_custom_object(
            GROUP,
            VERSION,
            self.namespace,
            PLURAL,
            name,
            {"spec": spec},
            _content_type="application/merge-patch+json",
        )
        return result

    def patch_status(self, name: str, status: dict[str, Any]) -> dict[str, Any]:
        """Merge-patch the status subresource, as the operator writes it (e.g. the
        trainer's reports: status.progress and status.checkpoint)."""
        result: dict[str, Any] = self.custom.patch_namespaced_custom_object_status(
            GROUP, VERSION, self.namespace, PLURAL, name, {"status": status},
            _content_type="application/merge-patch+json",
        )  # fmt: skip
        return result

    def cancel(self, name: str) -> dict[str, Any]:
        return self.patch_spec(name, {"cancelled": True})

    def cancel_unless_finished(self, name: str) -> bool:
        """Cancel the job unless it has finished (the API server refuses to cancel a
        finished job: it may finish between a look at it and the cancel); whether the
        cancel was made."""
        try:
            self.cancel(name)
        except ApiException as exc:
            if exc.status == 422 and "already finished" in str(exc.body):
                return False
            raise
        return True

    def status(self, name: str) -> dict[str, Any]:
        """The job's status ({} until the operator wrote one)."""
        found: dict[str, Any] = self.get(name).get("status") or {}
        return found

    def phase(self, name: str) -> str | None:
        phase: str | None = self.get(name).get("status", {}).get("phase")
        return phase

    def wait_phase(self, name: str, phase: str, *, timeout: float = 60) -> dict[str, Any]:
        wait_for(lambda: self.phase(name) == phase, timeout=timeout, what=f"{name} to be {phase}")
        return self.get(name)

    def pod_names(self) -> list[str]:
        pods = self.core.list_namespaced_pod(self.namespace).items
        return sorted(p.metadata.name for p in pods)

    def wait_event(self, name: str, reason: str, *, timeout: float = 15) -> list[str]:
        """Wait for an Event of `reason` about the job (Events are posted off the
        reconcile path: shortly after the status, not with it); its Events' reasons."""
        return wait_for(lambda: (found := self.event_reasons(name)) and reason in found and found,
                        timeout=timeout, what=f"a {reason} Event of {name}")  # fmt: skip

    def event_reasons(self, name: str) -> list[str]:
        events = self.core.list_namespaced_event(
            self.namespace, field_selector=f"involvedObject.name={name}"
        ).items
        ordered = sorted(events, key=lambda e: (e.event_time or e.first_timestamp, e.metadata.name))
        return [e.reason for e in ordered]


def mirror_row(database_url: str, uid: str) -> dict[str, Any] | None:
    with (
        psycopg.connect(database_url) as conn,
        conn.cursor(row_factory=psycopg.rows.dict_row) as cur,
    ):
        try:
            cur.execute("SELECT * FROM local_training_jobs WHERE id = %s", (uid,))
        except psycopg.errors.UndefinedTable:
            return None
        return cur.fetchone()
