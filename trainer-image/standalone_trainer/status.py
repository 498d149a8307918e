"""Per-rank exit status files between the workers and the launcher of one Pod.

torchrun does not report its workers' exit codes when it stops on a signal (it exits
1 after forwarding SIGTERM), and a node whose ranks stopped because another node was
signalled sees its workers' 75 as failures. So the launcher (`standalone_trainer.launch`)
gives its workers a directory in SHUNTER_STATUS_DIR; each worker writes
`local-rank-N.json` ({"pid", "rank"} at start, plus "exit_code" right before it exits),
and the launcher exits with the code every local rank agrees on. Torch-free: the
launcher imports this module.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

ENV = "SHUNTER_STATUS_DIR"


def path_for(directory: Path, local_rank: int) -> Path:
    return directory / f"local-rank-{local_rank}.json"


def write(directory: Path | None, local_rank: int, **fields: Any) -> None:
    if directory is None:
        return
    final = path_for(directory, local_rank)
    tmp = final.with_suffix(".tmp")
    tmp.write_text(json.dumps(fields))
    os.replace(tmp, final)


def read(directory: Path, local_rank: int) -> dict[str, Any]:
    try:
        data = json.loads(path_for(directory, local_rank).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def from_environment(env: dict[str, str] | os._Environ[str]) -> Path | None:
    value = env.get(ENV)
    return Path(value) if value else None
