"""The trainer's torch venv (SHUNTER_TRAINER_PYTHON) for the trainer tests."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def python() -> str:
    path = os.environ.get("SHUNTER_TRAINER_PYTHON")
    if not path or not Path(path).exists():
        pytest.fail(
            "SHUNTER_TRAINER_PYTHON is not set: run the suite with `make test`, or "
            "export SHUNTER_TRAINER_PYTHON=$(hack/trainer-venv.sh)"
        )
    return path
