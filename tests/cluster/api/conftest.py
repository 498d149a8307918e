"""Fixtures for API tests: the operator and the API, both real, for the test namespace."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import httpx
import pytest

from tests.support.api import ApiProcess
from tests.support.operator import OperatorProcess


@pytest.fixture
def system(
    start_operator: Callable[..., OperatorProcess], start_api: Callable[..., ApiProcess]
) -> tuple[OperatorProcess, ApiProcess]:
    """The whole system for one namespace, with auth off (the guide's curl commands).
    Both start at once: neither needs the other to become ready."""
    operator, api = start_operator(wait=False), start_api(wait=False)
    return operator.wait_started(), api.wait_ready()


@pytest.fixture
def http(system: tuple[OperatorProcess, ApiProcess]) -> Iterator[httpx.Client]:
    with system[1].client() as client:
        yield client


@pytest.fixture
def operator_log(system: tuple[OperatorProcess, ApiProcess]) -> Callable[[], str]:
    return system[0].log
