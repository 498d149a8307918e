"""An array on the real node: each run's trainer process, started by the kubelet in the
trainer image, sees its own index and the count in its environment."""

from __future__ import annotations

import json

from tests.realnode.test_guide import START_TIMEOUT, job, wait_status
from tests.support.api import ApiProcess
from tests.support.operator import OperatorProcess
from tests.support.polling import wait_for
from tests.support.realnode import placement

# Prints what the process sees, then waits to be stopped; ends at once on SIGTERM (as
# PID 1 with no handler it would ignore it, and each cancel would wait out the grace).
SHOW = """
import json, os, signal, sys, time
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
print(json.dumps({k: os.environ.get(k) for k in
                  ("SHUNTER_ARRAY_INDEX", "SHUNTER_ARRAY_COUNT", "SHUNTER_JOB_NAME")}), flush=True)
while True:
    time.sleep(0.5)
"""


def test_each_run_of_an_array_sees_its_index(
    real_system: tuple[OperatorProcess, ApiProcess],
):
    _operator, api = real_system
    with api.client() as http:
        body = {"name": "idx", "gpus": 0, "command": ["python", "-c", SHOW], "args": [],
                "array": {"count": 2, "max_parallel": 2}, **placement()}  # fmt: skip
        made = http.post("/api/training/submit", json=body)
        assert made.status_code == 201, made.text
        # One slot (the fixture's operator): the runs take turns; cancelling one index
        # lets the next start.
        for i in range(2):
            wait_for(lambda i=i: job(http, f"idx-{i}").get("status") == "running",
                     timeout=START_TIMEOUT, what=f"idx-{i} to run")  # fmt: skip

            def printed(i: int = i) -> dict[str, str] | None:
                response = http.get(f"/api/training/status/idx-{i}/logs")
                lines = [ln for ln in response.text.splitlines() if ln.startswith("{")]
                return json.loads(lines[0]) if response.status_code == 200 and lines else None

            seen = wait_for(printed, timeout=START_TIMEOUT, what=f"idx-{i}'s trainer to print")
            assert seen == {"SHUNTER_ARRAY_INDEX": str(i), "SHUNTER_ARRAY_COUNT": "2",
                            "SHUNTER_JOB_NAME": f"idx-{i}"}  # fmt: skip
            cancelled = http.post(f"/api/training/cancel/idx/index/{i}")
            assert cancelled.status_code == 200, cancelled.text
        wait_status(http, "idx", "cancelled", timeout=120)
        assert job(http, "idx")["array"]["cancelled"] == 2
