"""The unit tier uses no network: a connection or a name lookup off the loopback fails.

Loopback stays open: a test may stand up a server of its own on 127.0.0.1 (an
unreachable API server is a closed local port). Everything else would make
`make test-unit` depend on the machine it runs on.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterator
from typing import Any

import pytest

LOOPBACK_NAMES = {"localhost", "localhost.localdomain", ""}


def _is_loopback(host: object) -> bool:
    if not isinstance(host, str):
        return False
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False


def _refused(address: Any) -> bool:
    return isinstance(address, tuple) and not _is_loopback(address[0])


@pytest.fixture(scope="session", autouse=True)
def no_network() -> Iterator[None]:
    connect, connect_ex, getaddrinfo = (
        socket.socket.connect,
        socket.socket.connect_ex,
        socket.getaddrinfo,
    )

    def guarded_connect(sock: socket.socket, address: Any) -> None:
        if _refused(address):
            raise OSError(f"unit tests use no network (connect to {address!r})")
        connect(sock, address)

    def guarded_connect_ex(sock: socket.socket, address: Any) -> int:
        if _refused(address):
            raise OSError(f"unit tests use no network (connect to {address!r})")
        return connect_ex(sock, address)

    def guarded_getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host is not None and not _is_loopback(
            host if not isinstance(host, bytes) else host.decode()
        ):
            raise OSError(f"unit tests use no network (lookup of {host!r})")
        return getaddrinfo(host, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(socket.socket, "connect", guarded_connect)
        patch.setattr(socket.socket, "connect_ex", guarded_connect_ex)
        patch.setattr(socket, "getaddrinfo", guarded_getaddrinfo)
        yield
